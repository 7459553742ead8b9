"""An overall deadline for HTTP with a remote server that may be hostile (a feed, a push target, a
peer's key set), whatever that server does.

requests, urllib3 and httpx bound each socket operation (the connect, then each read: urllib3's
`Timeout(total=...)` too is spent per read once connected), never a whole request, so a server
that sends one header line or one byte a second keeps a request alive for ever. A
`DeadlineSession` keeps a duplicate of each of its connections' sockets; when a limit passes, one
watchdog thread shuts those sockets down, which ends the TLS handshake, the wait for the response
head or the body read in progress, and `expired` says which limit it was. A shut socket reads as
the end of the data: a request whose head was cut short fails here with a ConnectionError, and
whoever reads a body checks `expired` at its end (a body without a length would look complete). A duplicate, not the socket itself: it stays valid until the session lets it
go (once the socket itself is closed), so the watchdog never shuts a descriptor that has since
been reused by something else.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

HEAD = "head"  # the response head (status line and headers) did not arrive in time
TOTAL = "total"  # the session's overall deadline passed


class BodyTooLarge(Exception):
    """A response body decoded to more than the reader's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit:,} bytes")
        self.limit = limit


class _Watchdog:
    """One thread for the process that fires limits at their time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Limits]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, limits: _Limits) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), limits))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="http-deadline")
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, limits = heapq.heappop(self._heap)
            limits.check()


_WATCHDOG = _Watchdog()


class _Watch:
    """A duplicate of one connection's socket, kept while that socket is open."""

    def __init__(self, sock: socket.socket) -> None:
        self.handle = sock.dup()
        self.follow(sock)

    def follow(self, sock: socket.socket) -> None:
        # The socket to outlive: after a TLS handshake, the TLS socket (the plain one is detached).
        self._ref = weakref.ref(sock)

    def done(self) -> bool:
        """Whether the socket has really been closed (a response may hold it past the connection)."""
        sock = self._ref()
        return sock is None or sock.fileno() == -1


class _Limits:
    """A session's limits and the duplicates of its open sockets."""

    def __init__(self, deadline: float | None, head_within: float | None) -> None:
        self.deadline = deadline
        self.head_within = head_within
        self.expired: str | None = None
        self._lock = threading.Lock()
        self._watches: list[_Watch] = []
        self._head_until: float | None = None
        if deadline is not None:
            _WATCHDOG.schedule(deadline, self)

    def head_started(self) -> None:
        if self.head_within is not None:
            with self._lock:
                self._head_until = time.monotonic() + self.head_within
            _WATCHDOG.schedule(self._head_until, self)

    def head_done(self) -> None:
        with self._lock:
            self._head_until = None

    def check(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.expired is None:
                if self.deadline is not None and now >= self.deadline:
                    self.expired = TOTAL
                elif self._head_until is not None and now >= self._head_until:
                    self.expired = HEAD
            if self.expired is not None:
                for watch in self._watches:
                    _shut(watch.handle)

    def add(self, sock: socket.socket) -> _Watch:
        self.prune()
        watch = _Watch(sock)
        with self._lock:
            self._watches.append(watch)
            if self.expired is not None:
                _shut(watch.handle)
        return watch

    def prune(self) -> None:
        """Let go of the duplicates of sockets that have been closed since."""
        with self._lock:
            done = [w for w in self._watches if w.done()]
            self._watches = [w for w in self._watches if not w.done()]
        for watch in done:
            watch.handle.close()

    def close(self) -> None:
        with self._lock:
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.handle.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixed into urllib3's connections: each new socket is watched by the session's limits."""

    _limits: _Limits | None
    _watch: _Watch | None
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        if self._limits is not None:
            self._watch = self._limits.add(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self._watch is not None and self.sock is not None:
            self._watch.follow(self.sock)

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            # A response read until the server closes keeps the socket open past its connection.
            self._watch = None
            if self._limits is not None:
                self._limits.prune()


class _HTTPConnection(_Watched, HTTPConnection):
    def __init__(self, *args: Any, limits: _Limits | None = None, **kwargs: Any) -> None:
        self._limits, self._watch = limits, None
        super().__init__(*args, **kwargs)


class _HTTPSConnection(_Watched, HTTPSConnection):
    def __init__(self, *args: Any, limits: _Limits | None = None, **kwargs: Any) -> None:
        self._limits, self._watch = limits, None
        super().__init__(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _PoolManager(PoolManager):
    def __init__(self, *args: Any, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.conn_kw["limits"] = self._limits
        return pool


class _Adapter(HTTPAdapter):
    def __init__(self, limits: _Limits) -> None:
        self._limits = limits
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = _PoolManager(
            num_pools=connections, maxsize=maxsize, block=block, limits=self._limits, **kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # Each hop (a redirect is another) until its response head is in; the body is read later.
        self._limits.head_started()
        try:
            response = super().send(request, *args, **kwargs)
        finally:
            self._limits.head_done()
        if self._limits.expired is not None:
            # A shut socket reads as the end of the data: a head cut short looks complete.
            response.close()
            raise requests.exceptions.ConnectionError(f"stopped at its {self._limits.expired} limit")
        return response


class DeadlineSession(requests.Session):
    """A requests Session that stops at `deadline` (a time.monotonic() value), and fails a request
    whose response head (status line and headers) takes more than `head_within` seconds."""

    def __init__(self, *, deadline: float | None = None, head_within: float | None = None) -> None:
        super().__init__()
        self._limits = _Limits(deadline, head_within)
        self.mount("http://", _Adapter(self._limits))
        self.mount("https://", _Adapter(self._limits))

    @property
    def expired(self) -> str | None:
        """Which limit stopped this session (HEAD or TOTAL), or None."""
        deadline = self._limits.deadline
        if self._limits.expired is None and deadline is not None and time.monotonic() >= deadline:
            self._limits.check()
        return self._limits.expired

    @property
    def deadline(self) -> float | None:
        return self._limits.deadline

    def stop_at(self, deadline: float | None) -> None:
        """Move the overall deadline, or lift it (for a session that gives each request a limit of
        its own); a session already stopped by a limit stays stopped."""
        with self._limits._lock:
            self._limits.deadline = deadline
        if deadline is not None:
            _WATCHDOG.schedule(deadline, self._limits)

    def read_body(self, response: requests.Response, limit: int) -> bytes:
        """`response`'s whole body as decoded (gzip, deflate), read in bounded memory: BodyTooLarge
        past `limit` bytes, a ConnectionError when a limit of the session cut it short."""
        parts, total = [], 0
        with response:
            for chunk in response.iter_content(16 * 1024):
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge(limit)
                parts.append(chunk)
        if self.expired is not None:  # a shut socket reads as the end of the body
            raise requests.exceptions.ConnectionError(f"stopped at its {self.expired} limit")
        return b"".join(parts)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._limits.close()
