"""FastAPI dependencies: the database session and the authenticated caller."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.auth.certs import forwarded_fingerprint, tcp_peer
from exchange.auth.service import Principal
from exchange.context import Ctx
from exchange.database.core import session_scope
from exchange.errors import ForbiddenError, UnauthorizedError

if TYPE_CHECKING:
    from exchange.limits.service import Limits


def record_login_failure(factory: sessionmaker[Session], who: str, channel: str) -> str:
    """Audit a failed login in its own transaction (the request's own is rolled back).

    The actor is the credential id or partner slug the caller named, if one exists, else
    "unknown": what was presented may be a pasted secret, so no part of it is kept. Returns
    the actor, fit for logs.
    """
    with session_scope(factory, write=True) as db:
        actor = auth_service.failure_actor(db, who)
        audit.record(db, actor=actor, action="login.failure", details={"channel": channel})
    return actor


def count_login_failure(
    limits: Limits | None, factory: sessionmaker[Session], address: str | None, who: str, channel: str
) -> str:
    """A failed login, as every entry point records it: counted toward `address`'s throttle (and
    audited while under its threshold) by `limits`, or audited on its own row where an app runs
    without limits (tests). Returns the actor, fit for logs."""
    if limits is not None:
        return limits.login_failed(address, who, channel)
    return record_login_failure(factory, who, channel)


def _credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        key = value.strip()
        return key.partition(".")[0], key
    if scheme.lower() == "basic" and value.strip():
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password
    return None


def current_user(request: Request, ctx: Ctx) -> Principal:
    """The caller, from `Authorization: Bearer <key>` or HTTP Basic; 401 otherwise, 429 when
    its address failed too often or its credential is over its rate.

    Its own short read transaction, so it never holds the request's write lock.
    """
    given = _credentials(request)
    address = request.client.host if request.client else None
    certificate = forwarded_fingerprint(
        request.headers, tcp_peer(request.scope, address), ctx.trusted_proxies
    )
    principal = None
    if given or certificate:
        if given and ctx.limits is not None:
            # A certificate alone is not refused before its check (no slow hash; see
            # taxii_server.auth): bound ones behind a throttled address keep working.
            ctx.limits.before_login(address, given[1], "rest")
        with session_scope(ctx.sessions) as db:
            if given:
                principal = auth_service.authenticate(
                    db, given[0], given[1], cache=ctx.key_cache, certificate=certificate
                )
            elif certificate:
                principal = auth_service.authenticate_certificate(db, certificate)
    if principal is None:
        if given or certificate:
            count_login_failure(ctx.limits, ctx.sessions, address, given[0] if given else "", "rest")
        raise UnauthorizedError("a valid credential is required (Authorization: Bearer <key>)")
    if ctx.limits is not None:
        ctx.limits.admit(principal, "rest")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def get_db(request: Request, ctx: Ctx, _caller: CurrentUser) -> Iterator[Session]:
    """One transaction per request, committed when the handler succeeds.

    Only requests that may write take SQLite's write lock up front (exports and previews are
    GETs that must not hold up TAXII writers). The caller is authenticated first, so a failed
    login is answered (and audited) before any lock is taken. GETs read the replica when one
    is configured (the caller was authenticated on the primary).
    """
    write = request.method not in ("GET", "HEAD")
    with session_scope(ctx.sessions if write else ctx.read_sessions, write=write) as session:
        yield session


def get_primary_db(request: Request, ctx: Ctx, _caller: CurrentUser) -> Iterator[Session]:
    """Like get_db, but always on the primary: for reads that must not lag (the audit trail
    and the disclosure ledger are evidence; the scheduler's leader changes by the second)."""
    write = request.method not in ("GET", "HEAD")
    with session_scope(ctx.sessions, write=write) as session:
        yield session


# scope="function": commit (or roll back) before the response is sent, never after it, so a
# client that got a 2xx can rely on the write having landed.
DbSession = Annotated[Session, Depends(get_db, scope="function")]
PrimaryDbSession = Annotated[Session, Depends(get_primary_db, scope="function")]


def get_write_db(ctx: Ctx, _caller: CurrentUser) -> Iterator[Session]:
    """A write transaction from the start, for GETs that record something (exports)."""
    with session_scope(ctx.sessions, write=True) as session:
        yield session


WriteDbSession = Annotated[Session, Depends(get_write_db, scope="function")]


def require_role(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that admits only callers with one of `roles`."""

    def check(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise ForbiddenError(f"this needs the {' or '.join(roles)} role")
        return user

    return check


# One check function per role set, shared by the aliases and by routers'
# `dependencies=[Depends(require_admin)]`, so FastAPI runs it once per request.
require_admin = require_role("admin")
require_staff = require_role("admin", "analyst")
AdminUser = Annotated[Principal, Depends(require_admin)]
StaffUser = Annotated[Principal, Depends(require_staff)]
