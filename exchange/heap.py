"""The garbage collector as a serving process runs it, once its app is built.

A page a partner pulls makes some 15,000 short-lived objects (rows, tuples, texts); reference
counting frees nearly all of them, but each 700 net allocations start a young collection, and
now and then a full one walks everything the process holds: the app, SQLAlchemy's compiled
statements, every imported module. Measured on section 6's pulls (benchmarks/README.md):
about 2.6 ms of collections a page, one full collection of 147 ms among them.

So a server, once built, moves what it holds to the permanent generation (`gc.freeze`: never
walked again; it lives as long as the process anyway) and starts young collections every
20,000 net allocations: what requests leave in cycles is still collected, a page's worth of
objects at a time.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Freeze what the process holds now and space out young collections (call once the app is
    built, before serving)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
