"""FastAPI dependencies: the database session and the authenticated caller."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.auth import service as auth_service
from exchange.auth.service import Principal
from exchange.database.core import session_scope
from exchange.errors import ForbiddenError, UnauthorizedError


def safe_user_name(who: str) -> str:
    """The user name a failed login gave, fit for logs: a key pasted into it keeps only the
    credential id before its dot, never the secret."""
    name = who.partition(".")[0][:64]
    # Control characters (a NUL cannot even be stored in PostgreSQL text) are shown escaped.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)[:64] or "anonymous"


def record_login_failure(factory, who: str, channel: str) -> None:  # type: ignore[no-untyped-def]
    """Audit a failed login in its own transaction (the request's own is rolled back)."""
    with session_scope(factory, write=True) as db:
        audit.record(db, actor=safe_user_name(who), action="login.failure", details={"channel": channel})


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


def current_user(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <key>` or HTTP Basic; 401 otherwise.

    Its own short read transaction, so it never holds the request's write lock.
    """
    given = _credentials(request)
    principal = None
    if given:
        with session_scope(request.app.state.session_factory) as db:
            principal = auth_service.authenticate(db, given[0], given[1], cache=request.app.state.key_cache)
    if principal is None:
        if given:
            record_login_failure(request.app.state.session_factory, given[0], "rest")
        raise UnauthorizedError("a valid credential is required (Authorization: Bearer <key>)")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def get_db(request: Request, _caller: CurrentUser) -> Iterator[Session]:
    """One transaction per request, committed when the handler succeeds.

    Only requests that may write take SQLite's write lock up front (exports and previews are
    GETs that must not hold up TAXII writers). The caller is authenticated first, so a failed
    login is answered (and audited) before any lock is taken.
    """
    write = request.method not in ("GET", "HEAD")
    with session_scope(request.app.state.session_factory, write=write) as session:
        yield session


# scope="function": commit (or roll back) before the response is sent, never after it, so a
# client that got a 2xx can rely on the write having landed.
DbSession = Annotated[Session, Depends(get_db, scope="function")]


def get_write_db(request: Request, _caller: CurrentUser) -> Iterator[Session]:
    """A write transaction from the start, for GETs that record something (exports)."""
    with session_scope(request.app.state.session_factory, write=True) as session:
        yield session


WriteDbSession = Annotated[Session, Depends(get_write_db, scope="function")]


def require_role(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that admits only callers with one of `roles`."""

    def check(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise ForbiddenError(f"this needs the {' or '.join(roles)} role")
        return user

    return check


AdminUser = Annotated[Principal, Depends(require_role("admin"))]
StaffUser = Annotated[Principal, Depends(require_role("admin", "analyst"))]
