"""HTTP Basic for TAXII: medallion's shared `auth` object resolves the caller through us."""
from __future__ import annotations

import logging

from flask import Response, current_app
from medallion import auth

from exchange.auth import service as auth_service
from exchange.auth.service import Principal
from exchange.database.core import session_scope
from taxii_server.errors import error_response

log = logging.getLogger(__name__)
REALM = "TAXII 2.1 exchange"


def _verify(username: str, password: str) -> Principal | None:
    ext = current_app.extensions.get("exchange")
    if ext is None or not username or not password:
        return None
    with session_scope(ext.session_factory) as db:
        principal = auth_service.authenticate(db, username, password, cache=ext.key_cache)
    if principal is None:
        log.warning("TAXII authentication failed for user %r", username[:64])
    return principal


def _unauthorized(status: int) -> Response:
    if status == 403:
        return error_response(403, "Forbidden", "Your credential may not use this resource")
    response = error_response(
        401,
        "Unauthorized",
        "A valid credential is required: HTTP Basic with the credential id and its key",
    )
    response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return response


def install() -> None:
    """Point medallion's module-level HTTPBasicAuth at our credential store (idempotent)."""
    auth.verify_password(_verify)
    auth.error_handler(_unauthorized)
