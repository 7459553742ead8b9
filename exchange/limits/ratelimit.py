"""Per-credential rate limits: a token bucket per credential, kept in each API process.

Why per process: a shared counter would cost a database write on every request, on the
partner's hot path. Each process instead enforces its share of the limit (the rate and burst
divided by `EXCHANGE_WORKERS`), so N workers together never allow more than the limit. The
price is that a client whose requests all land on one worker gets only that worker's share
(stricter, never looser); the README says so.

Limits are per credential, as partners hold one credential per system: a partner with two
systems has two buckets. Every channel (TAXII, REST, /metrics) and both ways of presenting a
key (Basic, Bearer) draw from the same credential's bucket.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.agreement import service as agreement_service
from exchange.audit import service as audit
from exchange.audit.models import AuditEvent
from exchange.auth.service import Principal
from exchange.config import Settings
from exchange.database.core import session_scope
from exchange.errors import RateLimitedError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# An agreement's rate_limit is re-read this often (a change applies everywhere within it).
POLICY_SECONDS = 30.0
MAX_BUCKETS = 20_000
ACTION = "rate_limit.exceeded"


@dataclass(frozen=True, slots=True)
class Rate:
    per_minute: int
    burst: int


class _Bucket:
    __slots__ = ("audited_window", "refused", "refused_window", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.refused = 0  # refusals in refused_window
        self.refused_window = -1
        self.audited_window = -1


def share(rate: Rate, workers: int) -> tuple[float, float]:
    """This process's refill per second and capacity for a rate split over `workers`."""
    return rate.per_minute / 60.0 / workers, max(1.0, rate.burst / workers)


class RateLimiter:
    """Counts requests per credential and refuses those over the caller's rate (429)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._workers = settings.workers
        self._clock, self._wall = clock, wall
        self._partner_default = (
            Rate(settings.rate_limit_per_minute, max(1, settings.rate_limit_burst))
            if settings.rate_limit_per_minute
            else None
        )
        self._staff = (
            Rate(settings.rate_limit_staff_per_minute, max(1, settings.rate_limit_staff_burst))
            if settings.rate_limit_staff_per_minute
            else None
        )
        self._buckets: dict[str, _Bucket] = {}
        self._policies: dict[int, tuple[Rate | None, float]] = {}
        self._lock = threading.Lock()

    def rate_for(self, principal: Principal) -> Rate | None:
        """The caller's rate: staff default, else its agreement's `rate_limit`, else the default."""
        if principal.partner_pk is None:
            return self._staff
        now = self._clock()
        with self._lock:
            cached = self._policies.get(principal.partner_pk)
        if cached is not None and cached[1] > now:
            return cached[0]
        rate = self._partner_default
        with self._sessions() as db:
            doc = agreement_service.current_doc_for(db, principal.partner_pk)
        if doc is not None and doc.rate_limit is not None:
            rate = Rate(doc.rate_limit.per_minute, doc.rate_limit.capacity)
        with self._lock:
            self._policies[principal.partner_pk] = (rate, now + POLICY_SECONDS)
        return rate

    def check(self, principal: Principal, channel: str) -> None:
        """Take one request from the caller's bucket, or raise RateLimitedError (429)."""
        rate = self.rate_for(principal)
        if rate is None:
            return
        refill, capacity = share(rate, self._workers)
        now = self._clock()
        window = int(self._wall() // WINDOW_SECONDS)
        with self._lock:
            bucket = self._buckets.get(principal.credential_id)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now, refill, capacity)
                bucket = self._buckets[principal.credential_id] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * refill)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = math.ceil((1.0 - bucket.tokens) / refill)
            previous = bucket.refused if bucket.refused_window == window - 1 else 0
            if bucket.refused_window != window:
                bucket.refused, bucket.refused_window = 0, window
            bucket.refused += 1
            first = bucket.audited_window != window
            bucket.audited_window = window
        metrics.RATE_LIMITED.inc(caller=principal.partner_slug or principal.role, channel=channel)
        if first:
            self._audit(principal, channel, rate, window, previous)
        raise RateLimitedError(
            f"credential {principal.credential_id} is over its limit of {rate.per_minute} requests "
            f"per minute (burst {rate.burst}); retry after {wait} s",
            retry_after_seconds=wait,
        )

    def forget_policies(self) -> None:
        """Re-read agreements' rate limits on the next request (tests, agreement changes)."""
        with self._lock:
            self._policies.clear()

    def _prune(self, now: float, refill: float, capacity: float) -> None:
        # Buckets that would be full again hold nothing worth keeping.
        idle = capacity / refill if refill > 0 else 0
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= idle]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()

    def _audit(self, principal: Principal, channel: str, rate: Rate, window: int, previous: int) -> None:
        """One audit row per credential per window, whichever worker refuses first."""
        start = datetime.fromtimestamp(window * WINDOW_SECONDS, UTC)
        try:
            with session_scope(self._sessions, write=True) as db:
                already = db.scalars(
                    select(AuditEvent.seq).where(
                        AuditEvent.action == ACTION,
                        AuditEvent.target == principal.credential_id,
                        AuditEvent.at >= start,
                    )
                ).first()
                if already is None:
                    audit.record(
                        db,
                        actor=principal.credential_id,
                        action=ACTION,
                        target=principal.credential_id,
                        details={
                            "channel": channel,
                            "partner": principal.partner_slug,
                            "per_minute": rate.per_minute,
                            "burst": rate.burst,
                            "window_start": start.isoformat(),
                            "refused_previous_window": previous,
                        },
                    )
        except Exception as exc:  # the refusal stands even when the trail cannot be written now
            log.error("could not audit a rate-limit refusal for %s: %s", principal.credential_id, exc)
