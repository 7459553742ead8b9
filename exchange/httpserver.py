"""uvicorn as the exchange runs it: the server's own refusals in the exchange's error shapes.

uvicorn answers a request it cannot parse (with httptools: any URL over 65,535 bytes, which
its URL parser cannot index, or a malformed header) with a plain-text 400 before the app sees
it. Clients of /taxii2 expect a TAXII error resource and REST clients a problem+json body, so
this protocol answers in those shapes, chosen by the start of the URL it had read.
"""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# httptools keeps URL offsets in 16 bits: a longer URL cannot be parsed at all.
MAX_URL_BYTES = 65_535
TAXII_MEDIA = b"application/taxii+json;version=2.1"
PROBLEM_MEDIA = b"application/problem+json"


def refusal(url: bytes) -> tuple[int, bytes, bytes]:
    """Status, media type and body for a request the HTTP parser refused after reading `url`."""
    if len(url) > MAX_URL_BYTES:
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


class ExchangeHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol whose parse failures answer in the exchange's error shapes."""

    def send_400_response(self, msg: str) -> None:
        status, media, body = refusal(getattr(self, "url", b""))
        reason = b"URI Too Long" if status == 414 else b"Bad Request"
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: " + media + b"\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


HTTP_PROTOCOL = ExchangeHttpToolsProtocol
