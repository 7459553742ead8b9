"""The edge of the app: the client's address, request body caps, and security headers.

One pure ASGI middleware around everything the app serves (REST, TAXII, pages, /metrics):
- the client address behind a trusted proxy replaces the peer in the ASGI scope (TAXII sees it
  as REMOTE_ADDR), and X-Forwarded-For from anyone else changes nothing;
- every body outside /taxii2 is capped at EXCHANGE_MAX_CONTENT_LENGTH, declared or chunked: a
  413 problem (TAXII caps its own bodies per API root and answers a TAXII error resource);
- every response carries nosniff, frame-deny, a referrer policy and a strict CSP, plus HSTS when
  the public URL is https (the API docs page runs no inline script, so the same CSP holds there;
  the server's own refusals before the app carry these too, see exchange.httpserver).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.auth.certs import PEER_KEY
from exchange.config import Settings
from exchange.limits.client import client_address

# Every response's Content-Security-Policy unless it sets its own: every asset the exchange's
# own, no inline code (the pages and the API docs page are built to it).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; font-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


# On every response (HSTS is added when the public URL is https).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is over {limit} bytes, the most this server takes")


class EdgeMiddleware:
    """Client address, body cap and security headers for every HTTP request."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_content_length
        self.networks = settings.trusted_proxy_networks
        headers = list(SECURITY_HEADERS)
        if (settings.public_url or "").lower().startswith("https://") and settings.hsts_seconds:
            headers.append((b"strict-transport-security", b"max-age=%d" % settings.hsts_seconds))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.networks:
            self._resolve_client(scope)
        path: str = scope.get("path", "")
        send = self._sender(send, CSP.encode())
        if path.startswith("/taxii2"):
            # TAXII caps its bodies itself, per API root, in the TAXII error shape.
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await _problem(send, 413, "Payload too large", too_large(self.limit).detail)
            return
        await self.app(scope, self._capped(receive), send)

    def _resolve_client(self, scope: Scope) -> None:
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        address = client_address(peer, forwarded, self.networks)
        if address != peer:
            scope["client"] = (address, client[1] if client else 0)
            # The proxy itself, for what only a trusted proxy may vouch for (client certificates).
            scope[PEER_KEY] = peer

    def _capped(self, receive: Receive) -> Receive:
        limit, seen = self.limit, 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException: FastAPI passes it through its body parsing untouched,
                    # and the app's handler answers a 413 problem.
                    raise too_large(limit)
            return message

        return capped

    def _sender(self, send: Send, csp: bytes) -> Send:
        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._with_headers(message.get("headers", []), csp)
            await send(message)

        return sender

    def _with_headers(self, headers: Any, csp: bytes) -> list[tuple[bytes, bytes]]:
        out = list(headers)
        present = {name.lower() for name, _ in out}
        out += [(name, value) for name, value in self.headers if name not in present]
        if b"content-security-policy" not in present:
            out.append((b"content-security-policy", csp))
        return out


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1").strip())
    return None


async def _problem(send: Send, status: int, title: str, detail: str) -> None:
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
