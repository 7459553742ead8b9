"""PostgreSQL stopped and started again under load: every request is answered (503 with
Retry-After while the server is away, never a 500), and the same exchange process serves again
once it is back, without a restart.

The cluster is the test's own (pg_createcluster on a free port), so stopping it disturbs no one.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from exchange.agreement import service as agreement_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.context import context_of
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.intel import service as intel_service
from exchange.main import create_app
from exchange.partner import service as partner_service
from tests.support.pgcluster import Cluster, ClusterUnavailable, own_cluster
from tests.support.stix import envelope, indicator
from tests.support.taxii import free_port, start_uvicorn

pytestmark = pytest.mark.postgres
TAXII = "application/taxii+json;version=2.1"


@dataclass
class Exchange:
    url: str
    cluster: Cluster
    admin: tuple[str, str]
    partner: tuple[str, str]
    collection_id: str


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(own_cluster("restart"))
        except ClusterUnavailable as exc:
            pytest.skip(str(exc))
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("restart"),
            database_url=cluster.url,
            secret_key=secrets.token_urlsafe(40),
            scheduler_enabled=False,
            database_busy_seconds=2.0,
        )
        settings.ensure_data_dir()
        engine = make_engine(settings.sqlalchemy_url)
        migrate(engine)
        factory = make_session_factory(engine)
        with session_scope(factory, write=True) as db:
            init = initialise(db, settings)
            assert init.admin_id and init.admin_key
            root = intel_service.get_api_root(db, settings.api_root)
            coll = intel_service.create_collection(db, api_root=root, alias="restart", title="restart")
            _, cred, key = partner_service.create(
                db, slug="cert-restart", name="Restart CERT", country="IN", actor="test"
            )
            agreement_service.apply(
                db,
                {
                    "partner": "cert-restart",
                    "title": "restart test",
                    "status": "active",
                    "valid_from": "2020-01-01",
                    "valid_until": "2099-01-01",
                    "read": {"collections": ["restart"], "max_tlp": "amber"},
                },
                actor="test",
            )
            admin = (init.admin_id, init.admin_key)
            coll_id = coll.id
        engine.dispose()
        app = create_app(settings)
        port = free_port()
        server, thread = start_uvicorn(app, port)
        try:
            yield Exchange(f"http://127.0.0.1:{port}", cluster, admin, (cred.id, key), coll_id)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            context_of(app).engine.dispose()


@dataclass
class Traffic:
    """What each kind of request was answered, and when."""

    answers: list[tuple[str, float, int, str | None, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, retry_after: str | None, media: str) -> None:
        with self.lock:
            self.answers.append((kind, time.monotonic(), status, retry_after, media))


def _requests(ex: Exchange) -> dict[str, Callable[[httpx.Client], httpx.Response]]:
    objects = f"{ex.url}/taxii2/root/collections/{ex.collection_id}/objects/"
    counter = iter(range(10**9))

    def taxii_post(client: httpx.Client) -> httpx.Response:
        n = next(counter)
        body = orjson.dumps(envelope([indicator(n)]))
        return client.post(
            objects, content=body, auth=ex.admin, headers={"Content-Type": TAXII, "Accept": TAXII}
        )

    def bundle(client: httpx.Client) -> httpx.Response:
        obj = indicator(next(counter))
        body = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [obj]}
        return client.post(
            f"{ex.url}/api/v1/bundles",
            params={"collection": "restart"},
            json=body,
            headers={"Authorization": f"Bearer {ex.admin[1]}"},
        )

    return {
        "partner pull": lambda c: c.get(objects, auth=ex.partner, headers={"Accept": TAXII}),
        "collections": lambda c: c.get(
            f"{ex.url}/taxii2/root/collections/", auth=ex.partner, headers={"Accept": TAXII}
        ),
        "taxii post": taxii_post,
        "rest list": lambda c: c.get(
            f"{ex.url}/api/v1/partners", headers={"Authorization": f"Bearer {ex.admin[1]}"}
        ),
        "rest publish": bundle,
        "healthz": lambda c: c.get(f"{ex.url}/healthz"),
    }


def _hammer(ex: Exchange, traffic: Traffic, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    for kind, send in _requests(ex).items():

        def loop(kind: str = kind, send: Callable[[httpx.Client], httpx.Response] = send) -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        response = send(client)
                    except httpx.HTTPError as exc:  # a cut connection or no answer in time
                        traffic.add(kind, 0, None, type(exc).__name__)
                        continue
                    traffic.add(
                        kind,
                        response.status_code,
                        response.headers.get("Retry-After"),
                        response.headers.get("Content-Type", ""),
                    )
                    time.sleep(0.02)

        threads.append(threading.Thread(target=loop, daemon=True))
    for thread in threads:
        thread.start()
    return threads


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_postgres_going_away_under_load_is_503_with_retry_after_then_recovers(exchange: Exchange) -> None:
    traffic, stop = Traffic(), threading.Event()
    # An exception escaping after the answer started (a session that cannot roll back, closed
    # at teardown) is logged here by uvicorn and cuts the client's connection.
    errors = _Errors()
    logging.getLogger("uvicorn.error").addHandler(errors)
    threads = _hammer(exchange, traffic, stop)
    try:
        time.sleep(1.0)
        exchange.cluster.ctl("stop", "-m", "fast")  # a restart, with a window of outage under load
        stopped = time.monotonic()
        time.sleep(1.5)
        exchange.cluster.ctl("start")
        started = time.monotonic()
        deadline = started + 15
        kinds = set(_requests(exchange))
        while time.monotonic() < deadline:
            with traffic.lock:
                recovered = {
                    k for k, at, status, _, _ in traffic.answers if at > started + 0.1 and status < 300
                }
            if recovered == kinds:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=40)
        logging.getLogger("uvicorn.error").removeHandler(errors)
    assert not errors.messages, f"the server logged unhandled errors: {errors.messages[:3]}"
    statuses = Counter((kind, status) for kind, _, status, _, _ in traffic.answers)
    # 0: the connection was cut or nothing came back within 30 s.
    unexpected = {k: n for k, n in statuses.items() if k[1] not in (200, 201, 202, 503)}
    assert not unexpected, f"answers other than success or 503: {unexpected}"
    during = [a for a in traffic.answers if stopped < a[1] < started]
    assert any(status == 503 for _, _, status, _, _ in during), "no request met the outage"
    for kind, _, status, retry_after, media in traffic.answers:
        if status == 503:
            assert retry_after == "5", f"{kind}: 503 without Retry-After"
            want = TAXII if kind in ("partner pull", "collections", "taxii post") else "json"
            assert want in media, f"{kind}: 503 as {media}"
    recovered = {k for k, at, status, _, _ in traffic.answers if at > started and status < 300}
    assert recovered == set(_requests(exchange)), f"not all recovered after the restart: {recovered}"
