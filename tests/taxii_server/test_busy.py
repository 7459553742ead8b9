"""A busy or missing database is a 503 with Retry-After (TAXII error resource, problem+json), never a 500."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.database.core import make_session_factory, session_scope
from exchange.intel.models import Collection
from exchange.main import create_app
from tests.stixgen import envelope, indicator
from tests.taxii_server.conftest import TAXII
from tests.taxii_server.test_conformance import is_error_resource
from tests.taxii_server.test_hostile import problem


@pytest.fixture(scope="module")
def impatient(settings, engine, live_server, admin) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The app with a one-second wait for database locks."""
    app = create_app(settings.model_copy(update={"database_busy_seconds": 1.0}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    app.state.engine.dispose()


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
    app.state.engine.dispose()


def test_a_missing_database_is_503_with_retry_after(missing_database):
    taxii = missing_database.get("/taxii2/", headers={"Accept": TAXII}, auth=("cred-x", "cred-x.key"))
    is_error_resource(taxii, 503)  # type: ignore[arg-type]
    assert taxii.headers["Retry-After"] == "5"
    rest = missing_database.get("/api/v1/partners", headers={"Authorization": "Bearer cred-x.key"})
    problem(rest, 503)  # type: ignore[arg-type]
    assert rest.headers["Retry-After"] == "5"
