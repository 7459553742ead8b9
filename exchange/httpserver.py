"""uvicorn as the exchange runs it: the server's own refusals in the exchange's error shapes.

uvicorn answers a request it cannot parse (with httptools: any URL over 65,535 bytes, which
its URL parser cannot index, a malformed request line or header) with a plain-text 400 before
the app sees it, and it reads request headers of any size. This protocol answers those in the
exchange's shapes (a TAXII error resource under /taxii2, a problem+json body elsewhere, chosen
by the URL or, when the parser stopped before it, the request line), with the security headers
every response carries, and refuses headers past MAX_HEADER_BYTES with a 431 instead of holding
them in memory. (HSTS is not among them: these answers go out over plain HTTP, where browsers
ignore it; TLS ends at the reverse proxy, which refuses malformed requests itself.)
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exchange.limits.middleware import CSP, SECURITY_HEADERS

# httptools keeps URL offsets in 16 bits: a longer URL cannot be parsed at all.
MAX_URL_BYTES = 65_535
# The request line and headers together (nginx's default is 32 KiB): past any URL httptools can
# read, so that a URL too long is still a 414.
MAX_HEADER_BYTES = 128 * 1024
# After a refusal, how long and how much of the rest of the request is read and dropped.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
TAXII_MEDIA = b"application/taxii+json;version=2.1"
PROBLEM_MEDIA = b"application/problem+json"
_REASONS = {400: b"Bad Request", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def refusal(url: bytes, status: int | None = None) -> tuple[int, bytes, bytes]:
    """Status, media type and body for a request the server refused after reading `url`:
    `status` 431 for oversize headers, else 414 for an oversize URL or 400."""
    if status == 431:
        title = "Request header fields too large"
        detail = f"the request line and headers are over {MAX_HEADER_BYTES} bytes, the most this server reads"
    elif len(url) > MAX_URL_BYTES:
        status, title = 414, "URI too long"
        detail = f"the URL has more than {MAX_URL_BYTES} bytes, the most this server can read"
    else:
        status, title = 400, "Bad request"
        detail = "the request is not valid HTTP/1.1 (request line or headers malformed)"
    if url.startswith(b"/taxii2"):
        body: dict[str, Any] = {"title": title, "description": detail, "http_status": str(status)}
        return status, TAXII_MEDIA, orjson.dumps(body)
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return status, PROBLEM_MEDIA, orjson.dumps(body)


def _target(request_line: bytes) -> bytes:
    """The request target of a request line the parser may have refused (`FOO /taxii2/ ...`)."""
    parts = request_line.split(b"\r\n", 1)[0].split(b" ")
    return parts[1] if len(parts) > 1 else b""


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


class ExchangeHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol whose refusals answer in the exchange's error shapes, and which reads
    no more than MAX_HEADER_BYTES of a request's line and headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request line and headers, not a body
        self._head_bytes = 0
        self._request_line = b""
        self._refused = False
        self._pending: tuple[int | None] | None = None  # a refusal waiting for a response to end
        self._discarded = 0
        self._ended_in_data = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(data)
            return
        if self._in_head and not self._request_line:
            self._request_line = data[:1024]
        self._ended_in_data = False
        super().data_received(data)
        if self._refused or not self._in_head or self._ended_in_data or self.transport.is_closing():
            # Not counted when a request ended inside `data`: what followed it is the start of
            # the next one's head, of a length the parser does not tell (one chunk at most).
            return
        # The headers are still not complete after all of `data`: it was all request line and
        # headers.
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEADER_BYTES:
            self._refuse_oversize()

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEADER_BYTES:
            self._refuse_oversize()
            raise _Refused  # the parser stops here; uvicorn's handler finds it answered
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._request_line = True, 0, b""
        self._ended_in_data = True

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            self._refuse(None)

    def _refuse_oversize(self) -> None:
        self.logger.warning("Request line and headers over %d bytes refused.", MAX_HEADER_BYTES)
        self._refuse(None if len(getattr(self, "url", b"")) > MAX_URL_BYTES else 431)

    def _refuse(self, status: int | None) -> None:
        """Stop reading this connection's requests and answer: at once, or after the response
        still going out on it (a pipelined request before this one)."""
        self._refused = True
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            if not cycle.more_body:
                # An earlier request, read whole, is still being answered (or queued behind
                # one): the refusal follows the last of them.
                self._pending = (status,)
                self.flow.pause_reading()
                return
            # The request being read is the one refused (its body broke): whatever runs for it
            # learns that its client is gone, as when a connection drops.
            cycle.disconnected = True
            cycle.message_event.set()
        self._answer(status)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request queued behind it
        cycle = getattr(self, "cycle", None)
        if self._pending is not None and not self.pipeline and (cycle is None or cycle.response_complete):
            pending, self._pending = self._pending, None
            self._answer(pending[0])

    def _answer(self, status: int | None) -> None:
        """Answer the refusal and close. What the client is still sending is read and dropped for
        a moment first (a socket closed with unread data is reset, and the client may lose the
        answer)."""
        url = getattr(self, "url", b"") or _target(self._request_line)
        status, media, body = refusal(url, status)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        for name, value in (*SECURITY_HEADERS, (b"content-security-policy", CSP.encode())):
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: " + media + b"\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _discard(self, data: bytes) -> None:
        self._discarded += len(data)
        if self._discarded > LINGER_BYTES:
            self.transport.close()


HTTP_PROTOCOL = ExchangeHttpToolsProtocol
