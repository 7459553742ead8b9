"""The live exchange the tests talk to: a free port, uvicorn as `exchange serve` runs it, and the
TAXII 2.1 requests and answers the tests make and check."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import uvicorn
from sqlalchemy import Engine

from exchange.auth import service as auth_service
from exchange.config import Settings
from exchange.database.core import make_session_factory, session_scope
from exchange.intel import service
from exchange.intel.models import Collection

TAXII = "application/taxii+json;version=2.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_uvicorn(app, port: int) -> tuple[uvicorn.Server, threading.Thread]:  # type: ignore[no-untyped-def]
    """`app` served on 127.0.0.1:`port` in a daemon thread, once it accepts connections."""
    from exchange.httpserver import HTTP_PROTOCOL  # as `exchange serve` runs it

    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=HTTP_PROTOCOL, proxy_headers=False, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread


@dataclass
class LiveServer:
    """A running exchange, with the database behind it for setting up what a test needs."""

    url: str
    settings: Settings
    engine: Engine

    @property
    def api_root(self) -> str:
        return f"{self.url}/taxii2/{self.settings.api_root}/"

    def session(self):  # type: ignore[no-untyped-def]
        return session_scope(make_session_factory(self.engine), write=True)

    def credential(self, role: str = "admin", **kwargs) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        with self.session() as db:
            cred, key = auth_service.create_credential(db, name=f"test {role}", role=role, **kwargs)
        return cred.id, key

    def collection(self, alias: str | None = None, default_tlp: str = "amber") -> Collection:
        with self.session() as db:
            root = service.get_api_root(db, self.settings.api_root)
            return service.create_collection(
                db,
                api_root=root,
                alias=alias or f"c-{uuid.uuid4().hex[:12]}",
                title="test collection",
                default_tlp=default_tlp,
            )

    def collection_url(self, coll: Collection) -> str:
        return f"{self.api_root}collections/{coll.id}/"


def post(http: httpx.Client, url: str, body: dict[str, Any] | bytes, **headers: str) -> httpx.Response:
    """POST an envelope (or raw bytes) to the objects endpoint of the collection at `url`."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return http.post(url + "objects/", content=data, headers={"Content-Type": TAXII, **headers})


def submit(client: httpx.Client | None, url: str, objs: list[dict[str, Any]], auth=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """POST `objs` (as `client`, or with `auth`) and return the status resource; the POST must be accepted."""
    send = client.post if client else httpx.post
    # Without a client, the same 30 s read timeout as the suite's clients (httpx's own is 5 s).
    kwargs: dict[str, Any] = {"auth": auth} if auth else {}
    if client is None:
        kwargs["timeout"] = 30
    response = send(
        url + "objects/",
        content=orjson.dumps({"objects": objs}),
        headers={"Content-Type": TAXII, "Accept": TAXII},
        **kwargs,
    )
    assert response.status_code == 202, response.text
    return response.json()


def ids(url: str, cred: tuple[str, str]) -> set[str]:
    """The ids of the objects the first page of the collection at `url` serves to `cred`."""
    response = httpx.get(url + "objects/", auth=cred, headers={"Accept": TAXII})
    assert response.status_code == 200, response.text
    return {o["id"] for o in response.json().get("objects", [])}


def is_error_resource(response: httpx.Response, status: int) -> dict[str, Any]:
    """The TAXII error resource `response` must be, with HTTP `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/taxii+json")
    body = response.json()
    assert body["http_status"] == str(status) and body["title"] and body["description"]
    return body


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """A REST error: RFC 9457 problem+json with this status."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def pull(live_server, cred, coll) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """Every object of `coll` as `cred` receives it, pulled with taxii2-client in pages of 4."""
    from taxii2client.v21 import Server, as_pages

    server = Server(f"{live_server.url}/taxii2/", user=cred[0], password=cred[1])
    collection = next(c for c in server.default.collections if c.id == coll.id)
    got = []
    for page in as_pages(collection.get_objects, per_request=4):
        got += page.get("objects", [])
    return got


def every_version(get: Any, objects_url: str, auth: Any, *, limit: int) -> list[dict[str, Any]]:
    """Every object version at `objects_url`, following `next` in pages of `limit`; `get` is
    `httpx.get` or `requests.get` (medallion's peers are driven with requests)."""
    found: list[dict[str, Any]] = []
    params: dict[str, str] = {"match[version]": "all", "limit": str(limit)}
    while True:
        answer = get(objects_url, params=params, auth=auth, headers={"Accept": TAXII}, timeout=30)
        answer.raise_for_status()
        envelope = answer.json()
        found += envelope.get("objects", [])
        if not envelope.get("more"):
            return found
        params = {"next": envelope["next"], "match[version]": "all", "limit": str(limit)}
