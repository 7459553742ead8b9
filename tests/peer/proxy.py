"""A TLS-terminating HTTP proxy in front of one exchange, for peering tests.

It forwards every request to the exchange's plain-HTTP port and, when asked, changes one byte
of the next objects page it passes on (keeping the JSON well formed), keeps the pages it saw,
or answers the next objects request with a page it kept earlier (a replay).
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.certs import server_context

PASSED_HEADERS = ("Content-Type", "Cache-Control", "X-TAXII-Date-Added-First", "X-TAXII-Date-Added-Last")
_ID_DIGIT = re.compile(rb'"id":"indicator--([0-9a-f])')


@dataclass
class Controls:
    tamper_next: bool = False
    tamper_after: int = 0  # objects pages (with indicators) to pass on unchanged before tampering
    date_added_last: str | None = None  # replaces X-TAXII-Date-Added-Last on the next objects page
    replay_next: bytes | None = None
    pages: list[bytes] = field(default_factory=list)  # objects pages passed on, as sent
    posts: list[bytes] = field(default_factory=list)  # bodies POSTed through it (push delivery)
    tamper_post: bool = False  # change one byte of the next POSTed envelope with an indicator
    tampered: int = 0


def flip_one_byte(body: bytes) -> bytes:
    """`body` with the first hex digit of its first indicator id changed (still valid JSON)."""
    match = _ID_DIGIT.search(body)
    if match is None:
        raise AssertionError("no indicator in the page to tamper with")
    at = match.start(1)
    old = body[at : at + 1]
    new = b"1" if old != b"1" else b"2"
    return body[:at] + new + body[at + 1 :]


class Proxy:
    def __init__(self, upstream_port: int, tmp: Path, ca: tuple | None) -> None:  # type: ignore[type-arg]
        """TLS with a certificate `ca` signs; plain HTTP when `ca` is None."""
        self.controls = Controls()
        controls = self.controls
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST" and body is not None:
                    with lock:
                        if controls.tamper_post and b'"indicator--' in body:
                            controls.tamper_post = False
                            controls.tampered += 1
                            body = flip_one_byte(body)
                        controls.posts.append(body)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "accept", "content-type", "content-length")
                }
                objects_page = self.command == "GET" and self.path.split("?", 1)[0].endswith("/objects/")
                with lock:
                    replay = controls.replay_next if objects_page else None
                    if replay is not None:
                        controls.replay_next = None
                if replay is not None:
                    status, reply_headers, data = (
                        200,
                        {"Content-Type": "application/taxii+json;version=2.1"},
                        replay,
                    )
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        answer = conn.getresponse()
                        data = answer.read()
                        status = answer.status
                        reply_headers = {
                            k: answer.getheader(k) for k in PASSED_HEADERS if answer.getheader(k)
                        }
                    finally:
                        conn.close()
                    if objects_page and status == 200:
                        with lock:
                            if controls.tamper_next and b'"indicator--' in data:
                                if controls.tamper_after:
                                    controls.tamper_after -= 1
                                else:
                                    controls.tamper_next = False
                                    controls.tampered += 1
                                    data = flip_one_byte(data)
                            if controls.date_added_last is not None:
                                reply_headers["X-TAXII-Date-Added-Last"] = controls.date_added_last
                                controls.date_added_last = None
                            controls.pages.append(data)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)  # type: ignore[arg-type]
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _forward  # noqa: N815 (http.server names)
            do_POST = _forward  # noqa: N815
            do_DELETE = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "https" if ca is not None else "http"
        if ca is not None:
            context: ssl.SSLContext = server_context(tmp, issuer=ca)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
