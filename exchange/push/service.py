"""Push delivery: its progress per partner and collection, and the credentials it uses on the
partner's own TAXII server (the delivery itself runs in `feeds.delivery`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.errors import BadRequestError
from exchange.intel.models import Collection
from exchange.intel.timestamps import us_to_text
from exchange.partner import service as partner_service
from exchange.partner.models import Partner
from exchange.push.models import PushState


def push_status(db: Session, slug: str) -> list[dict[str, Any]]:
    """Push progress per collection for partner `slug` (for the REST API and the CLI)."""
    partner = partner_service.get_by_slug(db, slug)
    assert partner is not None
    rows = db.execute(
        select(PushState, Collection.alias)
        .join(Collection, Collection.pk == PushState.collection_pk)
        .where(PushState.partner_pk == partner.pk)
        .order_by(Collection.alias)
    ).all()
    return [
        {
            "collection": alias,
            "delivered_us": us_to_text(state.delivered_us) if state.delivered_us else None,
            "delivered_total": state.delivered_total,
            "last_success_at": _iso(state.last_success_at),
            "last_attempt_at": _iso(state.last_attempt_at),
            "consecutive_failures": state.consecutive_failures,
            "last_error": state.last_error,
        }
        for state, alias in rows
    ]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _check_push_auth(auth: dict) -> str:  # type: ignore[type-arg]
    """The kind of a valid push credential ("basic" or "headers"); BadRequestError otherwise.

    Messages name the fields at fault, never their values: the values are secrets.
    """
    shape = 'push credentials must be {"username": ..., "password": ...} or {"headers": {...}}'
    if not isinstance(auth, dict):
        raise BadRequestError(shape)
    if set(auth) == {"username", "password"}:
        username, password = auth["username"], auth["password"]
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequestError("push username and password must both be strings")
        # RFC 7617: the user-id of HTTP Basic cannot contain a colon.
        if not username or ":" in username or any(ord(ch) < 32 or ord(ch) == 127 for ch in username):
            raise BadRequestError("push username must be non-empty, without ':' or control characters")
        if not password or any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
            raise BadRequestError("push password must be non-empty, without control characters")
        return "basic"
    if set(auth) == {"headers"}:
        headers = auth["headers"]
        if not isinstance(headers, dict) or not headers:
            raise BadRequestError("push headers must be a non-empty mapping of header names to values")
        for name, value in headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise BadRequestError(f"{name!r} is not an HTTP header name")
            # CR or LF in a value would let it smuggle further headers into the request.
            if not isinstance(value, str) or not value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise BadRequestError(
                    f"the value of push header {name!r} must be a non-empty string without control characters"
                )
        return "headers"
    raise BadRequestError(shape)


def set_push_auth(db: Session, slug: str, auth: dict | None, *, actor: str) -> Partner:  # type: ignore[type-arg]
    """Set (or clear, with None) the credentials push delivery uses on the partner's own TAXII server."""
    kind = None if auth is None else _check_push_auth(auth)
    partner = partner_service.get_by_slug(db, slug)
    assert partner is not None
    partner.push_auth = None if auth is None else orjson.dumps(auth).decode()
    # What kind of credential, and header names at most: the audit trail is read widely.
    details: dict[str, object] = {"kind": kind}
    if kind == "headers":
        details["headers"] = sorted(auth["headers"])  # type: ignore[index]
    audit.record(db, actor=actor, action="partner.push-auth", target=slug, details=details)
    db.flush()
    return partner


def push_auth(partner: Partner) -> dict:  # type: ignore[type-arg]
    """The partner's push credentials ({} when none are set); never log or show them."""
    return orjson.loads(partner.push_auth) if partner.push_auth else {}
