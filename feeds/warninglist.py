"""MISP warninglists (pymispwarninglists): values known to be benign (public resolvers, top
sites, cloud ranges) that a feed should not turn into indicators."""

from __future__ import annotations

import threading
from functools import lru_cache

_lock = threading.Lock()
_lists = None


def _load():  # type: ignore[no-untyped-def]
    global _lists
    with _lock:
        if _lists is None:
            from pymispwarninglists import WarningLists

            _lists = WarningLists(slow_search=False)
    return _lists


@lru_cache(maxsize=65536)
def listed(value: str) -> str | None:
    """The name of the first warninglist that holds `value`, or None."""
    hits = _load().search(value)
    return hits[0].name if hits else None
