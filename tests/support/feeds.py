"""Feed tests: a real HTTP(S) server on 127.0.0.1 that serves lists, bundles and faults."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote_plus

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from exchange.config import Settings
from exchange.database.core import make_session_factory, session_scope
from exchange.feed import service as feed_service
from exchange.feed.schemas import FeedCreate
from exchange.intel import service as intel_service
from exchange.intel.models import Collection
from feeds.sources import check_options


@dataclass
class Route:
    """What one path answers. `body` may be bytes or a callable giving chunks (streamed)."""

    body: bytes | Callable[[], Iterable[bytes]] = b""
    content_type: str = "text/plain"
    status: int = 200
    etag: bool = True  # send an ETag (the body's hash) and honour If-None-Match
    last_modified: str | None = None
    fail_first: int = 0  # answer 500 this many times first
    hang: float = 0.0  # sleep this long before answering
    redirect: str | None = None  # answer 302 with this Location
    # Answer `status` as a careless debug page does: the credentials and the query it received,
    # in the reason phrase and in a TAXII-style error body (GET and POST).
    echo: bool = False
    requests: int = 0
    seen_paths: list[str] = field(default_factory=list)  # as requested, query included
    conditional_hits: int = 0  # 304s answered
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # sent with a 200 (e.g. Content-Encoding)
    # A streamed body without a length or chunks: read until the server closes the connection.
    close_delimited: bool = False
    # Send the status line, then one header line every this many seconds, never ending the head.
    trickle_head: float = 0.0


class FeedHttpServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _route(self) -> Any:
                """The route asked for, counted and recorded; None (answered 404) when none is."""
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self._send(404, b"not found", "text/plain")
                    return None
                route.requests += 1
                route.seen_headers.append(dict(self.headers))
                route.seen_paths.append(self.path)
                return route

            def do_GET(self) -> None:
                route = self._route()
                if route is None:
                    return
                if route.echo:
                    self._echo(route)
                    return
                if route.hang:
                    time.sleep(route.hang)
                if route.trickle_head:
                    self._trickle_head(route.trickle_head)
                    return
                if route.redirect:
                    self._send(302, b"", "text/plain", {"Location": route.redirect})
                    return
                if route.fail_first > 0:
                    route.fail_first -= 1
                    self._send(500, b"internal error", "text/plain")
                    return
                if route.status != 200:
                    self._send(route.status, b"nope", "text/plain")
                    return
                if callable(route.body):
                    self._stream(route, 200)
                    return
                etag = f'"{hashlib.sha256(route.body).hexdigest()[:16]}"' if route.etag else None
                if etag and self.headers.get("If-None-Match") == etag:
                    route.conditional_hits += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                extra = {"ETag": etag} if etag else {}
                extra |= route.headers
                if route.last_modified:
                    extra["Last-Modified"] = route.last_modified
                self._send(200, route.body, route.content_type, extra)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                route = self._route()
                if route is None:
                    return
                if route.echo:
                    self._echo(route)
                elif route.trickle_head:
                    self._trickle_head(route.trickle_head)
                elif callable(route.body):
                    self._stream(route, route.status)
                else:  # as a TAXII server answers a POST: `status` (e.g. 202) with the body
                    self._send(route.status, route.body, route.content_type, route.headers)

            def _stream(self, route: Route, status: int) -> None:
                assert callable(route.body)
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                if route.close_delimited:
                    self.close_connection = True
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in route.body():
                        if chunk and route.close_delimited:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        elif chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if not route.close_delimited:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def _trickle_head(self, every: float) -> None:
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for _ in range(int(60 / every)):
                        self.wfile.flush()
                        time.sleep(every)
                        self.wfile.write(b"X-Padding: x\r\n")
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                self.close_connection = True

            def _echo(self, route: Route) -> None:
                sent = " ".join(
                    f"{name}={self.headers[name]}"
                    for name in ("Authorization", "X-Api-Key")
                    if self.headers.get(name) is not None
                )
                said = f"bad credentials: {sent} query={self.path} decoded={unquote_plus(self.path)}"
                body = json.dumps({"title": "Unauthorized", "description": said}).encode()
                self._send(route.status, body, "application/taxii+json;version=2.1", reason=said)

            def _send(
                self,
                status: int,
                body: bytes,
                ctype: str,
                extra: dict[str, str] | None = None,
                reason: str | None = None,
            ) -> None:
                try:
                    self.send_response(status, reason)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (extra or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes | Callable[[], Iterable[bytes]] = b"", **kwargs: Any) -> str:
        """Serve `body` at `path`; returns the full URL."""
        self.routes[path] = Route(body=body, **kwargs)
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedHttpServer]:
    server = FeedHttpServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def feed_settings(settings: Settings) -> Settings:
    """The session's settings with short retry and run limits for feed tests."""
    return settings.model_copy(
        update={"feed_retry_base_seconds": 0.2, "feed_max_run_seconds": 60.0, "feed_batch_size": 200}
    )


class Feeds:
    """Make feeds, each into a fresh collection, on the test database."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory = factory
        self.settings = settings

    def add(self, kind: str, url: str, **fields: Any) -> tuple[str, Collection]:
        name = fields.pop("name", f"f-{uuid.uuid4().hex[:10]}")
        with session_scope(self.factory, write=True) as db:
            root = intel_service.get_api_root(db, self.settings.api_root)
            coll = intel_service.create_collection(
                db,
                api_root=root,
                alias=f"c-{uuid.uuid4().hex[:12]}",
                title="feed target",
                default_tlp="amber",
            )
            feed_service.create(
                db,
                FeedCreate(name=name, kind=kind, url=url, collection=coll.alias, **fields),
                actor="test",
                check_options=check_options,
            )
        return name, coll

    def runs(self, name: str) -> list[Any]:
        with session_scope(self.factory) as db:
            feed = feed_service.get_by_name(db, name)
            return [feed_service.run_read(r) for r in feed_service.runs(db, feed)]

    def get(self, name: str) -> Any:
        with session_scope(self.factory) as db:
            return feed_service.read(db, feed_service.get_by_name(db, name))


@pytest.fixture
def feeds(factory: sessionmaker[Session], feed_settings: Settings) -> Feeds:
    return Feeds(factory, feed_settings)


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """`call()`'s result, failing the test if it is still running after `seconds` (it is left
    behind on a daemon thread: a hang must fail the test, not hold the suite)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds:g} s"
    if "error" in box:
        raise box["error"]
    box.setdefault("seconds", time.monotonic() - started)
    return box["result"]
