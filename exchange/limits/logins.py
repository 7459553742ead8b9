"""Failed logins per client address: a flood is slowed down, counted, and audited once a window.

Up to `EXCHANGE_LOGIN_FAILURES_PER_MINUTE` failures from one address in a minute are audited
one row each, as every failed login always was (they say which credential was tried). Past that
the address is throttled until the minute ends: an attempt whose key this process has not
recently verified is answered 429 with Retry-After before any slow hash is computed, counted in
`exchange_login_throttled_total`, and the whole flood is one `login.throttled` audit row per
address per window. A client behind the same address whose key was verified in the last
`EXCHANGE_KEY_CACHE_SECONDS` keeps working.

IPv6 addresses are counted by their /64 (one host controls a whole /64). The address is the
TCP peer unless the peer is a trusted proxy (see `exchange.limits.client`).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.audit import service as audit
from exchange.audit.models import AuditEvent
from exchange.auth import service as auth_service
from exchange.config import Settings
from exchange.database.core import session_scope
from exchange.errors import RateLimitedError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
MAX_ADDRESSES = 50_000
ACTION = "login.throttled"


def address_key(address: str | None) -> str:
    """What failures are counted by: the IPv4 address, or the /64 of an IPv6 one."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(slots=True)
class _Window:
    window: int
    failures: int = 0
    refused: int = 0
    audited: bool = False
    refused_before: int = 0  # refused in the window before, when the flood went on


class LoginThrottle:
    """Failed logins per address in fixed one-minute windows, in this process."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], *, wall: Callable[[], float] = time.time
    ) -> None:
        # Each worker keeps its own count, so each allows its share.
        self.limit = max(1, settings.login_failures_per_minute // settings.workers)
        self._sessions = sessions
        self._wall = wall
        self._seen: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def _current(self, key: str, window: int) -> _Window:
        entry = self._seen.get(key)
        if entry is None or entry.window != window:
            carried = entry.refused if entry is not None and entry.window == window - 1 else 0
            if entry is None and len(self._seen) >= MAX_ADDRESSES:
                self._seen = {k: v for k, v in self._seen.items() if v.window >= window - 1}
                if len(self._seen) >= MAX_ADDRESSES:
                    self._seen.clear()
            entry = self._seen[key] = _Window(window, refused_before=carried)
        return entry

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until this address may try again, or None when it is not throttled."""
        now = self._wall()
        window = int(now // WINDOW_SECONDS)
        with self._lock:
            entry = self._seen.get(address_key(address))
            if entry is None or entry.window != window or entry.failures < self.limit:
                return None
        return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))

    def refuse(self, address: str | None, channel: str, retry_after: int) -> RateLimitedError:
        """Count a throttled attempt (audited once per window) and the error to answer it with."""
        key = address_key(address)
        window = int(self._wall() // WINDOW_SECONDS)
        with self._lock:
            entry = self._current(key, window)
            entry.refused += 1
            first = not entry.audited
            entry.audited = True
            failures, before = entry.failures, entry.refused_before
        metrics.LOGINS_THROTTLED.inc(channel=channel)
        if first:
            self._audit(key, channel, window, failures, before)
        return RateLimitedError(
            f"too many failed logins from this address; retry after {retry_after} s",
            retry_after_seconds=retry_after,
        )

    def failed(self, address: str | None, who: str, channel: str) -> str:
        """Count one failed login; audit it on its own row while under the limit. Returns the
        actor the failure is attributed to (fit for logs: no part of a presented secret)."""
        key = address_key(address)
        window = int(self._wall() // WINDOW_SECONDS)
        with self._lock:
            entry = self._current(key, window)
            entry.failures += 1
            own_row = entry.failures <= self.limit
        metrics.LOGIN_FAILURES.inc(channel=channel)
        if not own_row:  # a key this process knew, then failed (revoked meanwhile) while throttled
            return "unknown"
        with session_scope(self._sessions, write=True) as db:
            actor = auth_service.failure_actor(db, who)
            audit.record(db, actor=actor, action="login.failure", details={"channel": channel})
        return actor

    def _audit(self, key: str, channel: str, window: int, failures: int, before: int) -> None:
        start = datetime.fromtimestamp(window * WINDOW_SECONDS, UTC)
        try:
            with session_scope(self._sessions, write=True) as db:
                if _audited_since(db, key, start):  # another worker wrote this window's row
                    return
                audit.record(
                    db,
                    actor="unknown",
                    action=ACTION,
                    target=key,
                    details={
                        "channel": channel,
                        "failures": failures,
                        "window_start": start.isoformat(),
                        "window_seconds": WINDOW_SECONDS,
                        "refused_previous_window": before,
                    },
                )
        except Exception as exc:  # the refusal stands even when the trail cannot be written now
            log.error("could not audit a login flood from %s: %s", key, exc)


def _audited_since(db: Session, key: str, start: datetime) -> bool:
    query = select(AuditEvent.seq).where(
        AuditEvent.action == ACTION, AuditEvent.target == key, AuditEvent.at >= start
    )
    return db.scalars(query).first() is not None
