"""A busy or missing database is a 503 with Retry-After (TAXII error resource, problem+json), never a 500."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.context import context_of
from exchange.database.core import make_session_factory, session_scope
from exchange.intel.models import Collection
from exchange.main import create_app
from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, is_error_resource, problem


@pytest.fixture(scope="module")
def impatient(settings, engine, live_server, admin) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The app with a one-second wait for database locks."""
    app = create_app(settings.model_copy(update={"database_busy_seconds": 1.0}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    context_of(app).engine.dispose()


def _hold_write_lock(engine, coll):  # type: ignore[no-untyped-def]
    """What a long-running writer holds: SQLite's write lock, the collection's row on PostgreSQL."""
    scope = session_scope(make_session_factory(engine), write=True)
    db = scope.__enter__()
    db.execute(select(Collection.pk).where(Collection.pk == coll.pk).with_for_update())
    return scope


def test_a_taxii_post_waiting_on_a_held_lock_is_503_with_retry_after(
    impatient, engine, live_server, admin, coll
):
    url = f"/taxii2/{live_server.settings.api_root}/collections/{coll.id}/objects/"
    scope = _hold_write_lock(engine, coll)
    try:
        started = time.monotonic()
        response = impatient.post(
            url,
            content=orjson.dumps(envelope([indicator(1)])),
            headers={"Content-Type": TAXII, "Accept": TAXII},
            auth=admin,
        )
        waited = time.monotonic() - started
    finally:
        scope.__exit__(None, None, None)
    error = is_error_resource(response, 503)  # type: ignore[arg-type]
    assert response.headers["Retry-After"] == "5" and "busy" in error["description"]
    assert waited < 10
    # Once the lock is released the same request goes through.
    again = impatient.post(
        url,
        content=orjson.dumps(envelope([indicator(1)])),
        headers={"Content-Type": TAXII, "Accept": TAXII},
        auth=admin,
    )
    assert again.status_code == 202, again.text


def test_a_rest_publish_waiting_on_a_held_lock_is_503_with_retry_after(impatient, engine, admin, coll):
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [indicator(2)]}
    scope = _hold_write_lock(engine, coll)
    try:
        response = impatient.post(
            "/api/v1/bundles",
            params={"collection": coll.alias},
            json=bundle,
            headers={"Authorization": f"Bearer {admin[1]}"},
        )
    finally:
        scope.__exit__(None, None, None)
    error = problem(response, 503)  # type: ignore[arg-type]
    assert response.headers["Retry-After"] == "5" and "busy" in error["detail"]


@pytest.fixture
def missing_database(backend, settings, tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/no/such/dir/exchange.db"
    else:
        url = settings.database_url.rsplit("/", 1)[0] + f"/missing_{uuid.uuid4().hex[:8]}"
    app = create_app(settings.model_copy(update={"database_url": url, "data_dir": tmp_path}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    context_of(app).engine.dispose()


def test_a_missing_database_is_503_with_retry_after(missing_database):
    taxii = missing_database.get("/taxii2/", headers={"Accept": TAXII}, auth=("cred-x", "cred-x.key"))
    is_error_resource(taxii, 503)  # type: ignore[arg-type]
    assert taxii.headers["Retry-After"] == "5"
    rest = missing_database.get("/api/v1/partners", headers={"Authorization": "Bearer cred-x.key"})
    problem(rest, 503)  # type: ignore[arg-type]
    assert rest.headers["Retry-After"] == "5"


def _slow_pattern(n: int, salt: str) -> str:
    # At the bounds (64 operators), distinct so no cache helps: tens of ms to parse each.
    return " OR ".join(f"[url:value = 'http://{salt}.example/{n}/{i}']" for i in range(65))


def _lock_is_free(engine, coll) -> bool:  # type: ignore[no-untyped-def]
    """Whether a writer could take the collection's write lock right now, without waiting."""
    if engine.dialect.name == "sqlite":
        import sqlite3

        conn = sqlite3.connect(engine.url.database, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with engine.connect() as conn:
        try:
            conn.execute(text("SELECT pk FROM collection WHERE pk = :pk FOR UPDATE NOWAIT"), {"pk": coll.pk})
            return True
        except OperationalError:
            return False
        finally:
            conn.rollback()


@pytest.mark.live
def test_validating_a_slow_envelope_does_not_hold_the_write_lock(live_server, admin, engine):
    """100 patterns at the bounds take seconds to validate; writers must not wait for that."""
    import threading

    import httpx

    coll = live_server.collection()
    salt = uuid.uuid4().hex
    slow = envelope([indicator(i, pattern=_slow_pattern(i, salt)) for i in range(100)])
    done: dict[str, object] = {}

    def post_slow() -> None:
        started = time.monotonic()
        done["response"] = httpx.post(
            live_server.collection_url(coll) + "objects/",
            content=orjson.dumps(slow),
            headers={"Content-Type": TAXII, "Accept": TAXII},
            auth=admin,
            timeout=120,
        )
        done["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=post_slow)
    thread.start()
    probes = []
    while thread.is_alive():
        probes.append(_lock_is_free(engine, coll))
        time.sleep(0.05)
    thread.join()
    response = done["response"]
    assert response.status_code == 202 and response.json()["success_count"] == 100, response.text[:300]  # type: ignore[attr-defined]
    # Before validation moved out of the write transaction, nearly every probe found it locked.
    assert len(probes) >= 5 and sum(probes) >= 0.7 * len(probes), (done["seconds"], probes)
