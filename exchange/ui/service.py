"""Web page sessions: sign in with an API key, a signed cookie, CSRF tokens, idle and absolute expiry."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.auth.keys import VerifiedKeyCache
from exchange.auth.models import Credential
from exchange.auth.roles import INTERNAL_ROLES
from exchange.auth.service import Principal
from exchange.database.types import utcnow
from exchange.ui.models import UiSession

COOKIE = "exchange_session"
# last_seen_at is written at most this often, so reading pages does not write on every request.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Signed:
    """A live session: who, and the CSRF token its forms carry."""

    principal: Principal
    csrf: str
    session_id: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_cookie(secret: bytes, token: str) -> str:
    """`token.mac`: the token with an HMAC over it, so a forged or altered cookie is refused unread."""
    mac = hmac.new(secret, b"ui-session:" + token.encode(), hashlib.sha256).hexdigest()
    return f"{token}.{mac}"


def unsign_cookie(secret: bytes, value: str) -> str | None:
    """The token of a cookie this exchange signed, or None."""
    token, _, mac = value.rpartition(".")
    if not token or len(value) > 200:
        return None
    expected = sign_cookie(secret, token).rpartition(".")[2]
    return token if hmac.compare_digest(mac, expected) else None


def sign_in(db: Session, key: str, *, cache: VerifiedKeyCache) -> tuple[Principal, str] | None:
    """A new session for an administrator's or analyst's key: (principal, token), or None.

    Partner keys are refused like wrong ones: the pages are for the CERT's own staff.
    """
    key = key.strip()
    principal = auth_service.authenticate(db, key.partition(".")[0], key, cache=cache)
    if principal is None or principal.role not in INTERNAL_ROLES:
        return None
    token = secrets.token_urlsafe(32)
    db.add(
        UiSession(id=_digest(token), credential_id=principal.credential_id, csrf=secrets.token_urlsafe(32))
    )
    audit.record(db, actor=principal.credential_id, action="ui.sign_in", details={"role": principal.role})
    db.flush()
    return principal, token


def _principal(db: Session, credential_id: str, now: datetime) -> Principal | None:
    credential = db.get(Credential, credential_id)
    if credential is None or credential.revoked_at is not None or credential.role not in INTERNAL_ROLES:
        return None
    if credential.expires_at is not None and credential.expires_at <= now:
        return None
    return Principal(credential_id=credential.id, name=credential.name, role=credential.role)


def find(
    db: Session, token: str, *, idle: timedelta, lifetime: timedelta, now: datetime | None = None
) -> tuple[Signed | None, bool]:
    """The live session for `token` (None when unknown, idle too long, too old, or its credential
    no longer works), and whether its last-seen time is due to be written."""
    now = now or utcnow()
    row = db.get(UiSession, _digest(token))
    if row is None:
        return None, False
    if now - row.last_seen_at > idle or now - row.created_at > lifetime:
        return None, False
    principal = _principal(db, row.credential_id, now)
    if principal is None:
        return None, False
    return Signed(principal, row.csrf, row.id), now - row.last_seen_at > TOUCH_EVERY


def touch(db: Session, session_id: str) -> None:
    """Record that the session was used now (its idle expiry starts again)."""
    row = db.get(UiSession, session_id)
    if row is not None:
        row.last_seen_at = utcnow()
        db.flush()


def sign_out(db: Session, token: str) -> None:
    """End the session for `token` (the cookie stops working at once, in every worker)."""
    row = db.get(UiSession, _digest(token))
    if row is not None:
        audit.record(db, actor=row.credential_id, action="ui.sign_out")
        db.delete(row)
        db.flush()


def purge(db: Session, *, idle: timedelta, lifetime: timedelta) -> int:
    """Delete expired sessions; returns how many."""
    now = utcnow()
    stale = list(
        db.scalars(
            select(UiSession.id).where(
                (UiSession.last_seen_at < now - idle) | (UiSession.created_at < now - lifetime)
            )
        )
    )
    if stale:
        db.execute(delete(UiSession).where(UiSession.id.in_(stale)))
    return len(stale)


def csrf_ok(signed: Signed, given: str | None) -> bool:
    """Whether a form carried this session's own CSRF token."""
    return bool(given) and hmac.compare_digest(signed.csrf.encode(), (given or "").encode())


class SignInThrottle:
    """How long to hold a failed sign-in: `base` seconds, doubling with each failure from the same
    address in the last `window` seconds, at most `ceiling`. Slows guessing; one process's view."""

    def __init__(self, base: float, ceiling: float, window: float = 900.0) -> None:
        self.base, self.ceiling, self.window = base, ceiling, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def failed(self, address: str) -> float:
        """Count a failure from `address`; returns the delay to apply before answering."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(address, []) if now - t < self.window]
            recent.append(now)
            self._failures[address] = recent[-32:]
            if len(self._failures) > 10_000:  # bounded memory under a spray from many addresses
                self._failures = {address: self._failures[address]}
            delay: float = min(self.ceiling, self.base * 2.0 ** (len(recent) - 1))
            return delay
