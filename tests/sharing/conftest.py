"""Fixtures for the outbound tests: a partner's TAXII inbox."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support.taxii import TAXII


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A partner's TAXII inbox that keeps the raw bytes of every envelope POSTed to it."""

    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        count = len(orjson.loads(body).get("objects", []))
        status = {
            "id": str(uuid.uuid4()),
            "status": "complete",
            "total_count": count,
            "success_count": count,
            "failure_count": 0,
            "pending_count": 0,
        }
        payload = orjson.dumps(status)
        self.send_response(202)
        self.send_header("Content-Type", TAXII)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def inbox() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
