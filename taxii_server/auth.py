"""HTTP Basic for TAXII: medallion's shared `auth` object resolves the caller through us."""

from __future__ import annotations

import logging

from flask import Response, current_app, request
from medallion import auth

from exchange.auth import service as auth_service
from exchange.auth.certs import forwarded_fingerprint, tcp_peer
from exchange.auth.deps import count_login_failure
from exchange.auth.service import Principal
from taxii_server import context
from taxii_server.errors import error_response

log = logging.getLogger(__name__)
REALM = "TAXII 2.1 exchange"


def authenticate_request() -> Principal | None:
    """The caller of the current request (Basic credentials), resolved once per request."""
    ctx = context.current()
    if not ctx.authenticated:
        given = auth.get_auth()
        if given:
            ctx.principal = _verify(given.username or "", given.password or "")
        else:
            ctx.principal = _verify_certificate()
        ctx.authenticated = True
    return ctx.principal


def _certificate() -> str | None:
    """The fingerprint of the client certificate a trusted proxy verified for this request."""
    ext = current_app.extensions.get("exchange")
    if ext is None:
        return None
    peer = tcp_peer(request.environ.get("asgi.scope", {}), request.remote_addr)
    return forwarded_fingerprint(request.headers, peer, ext.trusted_proxies)


def _verify_certificate() -> Principal | None:
    """The caller of a certificate a trusted proxy verified, rate-limited as a key's caller is. A
    certificate bound to nothing (a revoked partner's may still pass the proxy's check) is a
    failed login, counted with the address's others; it is not refused before its check, which
    costs no slow hash, so bound certificates behind a throttled address keep working."""
    certificate = _certificate()
    if certificate is None:
        return None
    ext = current_app.extensions["exchange"]
    address = request.remote_addr
    db = current_app.medallion_backend.request_session()  # type: ignore[attr-defined]
    principal = auth_service.authenticate_certificate(db, certificate)
    if principal is None:
        count_login_failure(ext.limits, ext.session_factory, address, "", "taxii")
        log.warning("TAXII client certificate %s… is bound to no usable credential", certificate[:12])
    elif ext.limits is not None:
        ext.limits.admit(principal, "taxii")
    return principal


def _callback(username: str, password: str) -> Principal | None:
    # The guard in negotiation.py has already resolved the caller for this request.
    ctx = context.current()
    if ctx.authenticated:
        return ctx.principal
    return _verify(username, password)


def unauthorized() -> Response:
    return _unauthorized(401)


def _verify(username: str, password: str) -> Principal | None:
    ext = current_app.extensions.get("exchange")
    if ext is None or not username or not password:
        return None
    address = request.remote_addr
    if ext.limits is not None:
        ext.limits.before_login(address, password, "taxii")
    # The request's own read session: one connection and one snapshot per request.
    db = current_app.medallion_backend.request_session()  # type: ignore[attr-defined]
    principal = auth_service.authenticate(
        db, username, password, cache=ext.key_cache, certificate=_certificate()
    )
    if principal is None:
        actor = count_login_failure(ext.limits, ext.session_factory, address, username, "taxii")
        log.warning("TAXII authentication failed for user %r", actor)
    elif ext.limits is not None:
        ext.limits.admit(principal, "taxii")
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
    auth.verify_password(_callback)
    auth.error_handler(_unauthorized)
