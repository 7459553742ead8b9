"""One typed context per TAXII request, instead of loose keys on Flask's `g`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import g
from sqlalchemy.orm import Session

from exchange.auth.service import Principal
from exchange.database import core as database
from exchange.intel.models import ApiRoot

_KEY = "taxii_request"


@dataclass
class RequestContext:
    """What one TAXII request has resolved so far."""

    # The request's read session on the primary (closed at teardown): the caller, its access.
    db: Session | None = None
    # Its session on the read replica, when one is configured: pages of objects.
    replica_db: Session | None = None
    # The caller, once authentication ran (None inside means it failed).
    principal: Principal | None = None
    authenticated: bool = False
    # (api root, collection ref) -> (root, collection, access), or None when invisible.
    collections: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Per-request memo for access decisions (agreement, grants, the partner's writers).
    policy: dict[Any, Any] = field(default_factory=dict)
    visible_roots: list[ApiRoot] | None = None
    # The collection's date_added high-water mark, read before the page query (where it runs).
    high_water: int = 0
    # HEAD served as GET: strip the body afterwards.
    head: bool = False


def current() -> RequestContext:
    """The context of the request being handled (made on first use)."""
    ctx: RequestContext | None = g.get(_KEY)
    if ctx is None:
        ctx = RequestContext()
        setattr(g, _KEY, ctx)
    return ctx


def close() -> None:
    """End the request: close its sessions if any were opened."""
    ctx = g.pop(_KEY, None)
    if ctx is not None:
        for session in (ctx.db, ctx.replica_db):
            if session is not None:
                database.end_read(session)  # never raises: the answer has been decided (and may be sent)
