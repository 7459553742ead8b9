"""MISP warninglists (pymispwarninglists): values known to be benign (public resolvers, top
sites, cloud ranges) that a feed should not turn into indicators."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on first use: loading the lists is slow
    from pymispwarninglists.api import WarningLists

_lock = threading.Lock()
_lists: WarningLists | None = None


def _load() -> WarningLists:
    global _lists
    with _lock:
        if _lists is None:
            from pymispwarninglists.api import WarningLists

            _lists = WarningLists(slow_search=False)
    return _lists


@lru_cache(maxsize=65536)
def listed(value: str) -> str | None:
    """The name of the first warninglist that holds `value`, or None."""
    hits = _load().search(value)
    return hits[0].name if hits else None
