"""Read sessions on a streaming replica, falling back to the primary while the replica is down.

A replica that does not answer must not take the read path down with it while the primary
answers: reads go to the primary instead, and the replica is tried again `retry_seconds` later
(the requests that come before it is marked down, or just after the window, each pay one
connection attempt; those in between pay none). Reading the primary is always safe for a
poller: the primary holds everything the replica holds and more, and a resume point from a
page read there is never ahead of what the poller was served (see taxii_server.backend._reads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


class ReadSessions:
    """Callable like a sessionmaker: a session on the replica when it answers, else on the primary."""

    def __init__(self, replica: SessionFactory, primary: SessionFactory, *, retry_seconds: float = 10.0):
        self._replica = replica
        self._primary = primary
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def replica_down(self) -> bool:
        """Whether reads go to the primary now because the replica failed lately."""
        return time.monotonic() < self._down_until

    def __call__(self) -> Session:
        if self.replica_down:
            return self._primary()
        session = self._replica()
        try:
            session.connection()  # checks a pooled connection out (pinged) or connects
        except DBAPIError as exc:
            session.close()
            self._failed(exc)
            return self._primary()
        return session

    def _failed(self, exc: DBAPIError) -> None:
        with self._lock:
            first = not self.replica_down
            self._down_until = time.monotonic() + self._retry_seconds
        if first:
            # The error's class only: its text can carry the replica's address and user.
            log.error(
                "read replica unreachable (%s): reads go to the primary, replica tried again in %.0f s",
                type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                self._retry_seconds,
            )
