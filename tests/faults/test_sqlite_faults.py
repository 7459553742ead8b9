"""A full disk and a read-only SQLite file: writes are answered 503 with Retry-After and a message
that says which (never a 500, never "busy"), nothing is half stored, reads go on, and the same
app stores again once there is room.

A full disk is SQLite's own `max_page_count` (the file may not grow: SQLITE_FULL, exactly what a
full file system gives); a read-only file is opened with `mode=ro` (SQLITE_READONLY, what a
read-only file or mount gives; chmod would not stop a test running as root).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from exchange.agreement import service as agreement_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.context import context_of
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.intel import service as intel_service
from exchange.intel.models import ObjectVersion
from exchange.main import create_app
from exchange.partner import service as partner_service
from tests.support.stix import envelope, indicator

TAXII = "application/taxii+json;version=2.1"


@dataclass
class Store:
    settings: Settings
    path: Path
    admin: tuple[str, str]
    partner: tuple[str, str]
    collection_id: str

    def objects_url(self) -> str:
        return f"/taxii2/{self.settings.api_root}/collections/{self.collection_id}/objects/"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("sqlite-faults"),
        secret_key=secrets.token_urlsafe(40),
        scheduler_enabled=False,
        database_busy_seconds=1.0,
    )
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    with session_scope(make_session_factory(engine), write=True) as db:
        init = initialise(db, settings)
        assert init.admin_id and init.admin_key
        root = intel_service.get_api_root(db, settings.api_root)
        coll = intel_service.create_collection(db, api_root=root, alias="faults", title="faults")
        _, cred, key = partner_service.create(db, slug="cert-full", name="Full CERT", country="IN", actor="t")
        agreement_service.apply(
            db,
            {
                "partner": "cert-full",
                "title": "faults",
                "status": "active",
                "valid_from": "2020-01-01",
                "valid_until": "2099-01-01",
                "read": {"collections": ["faults"], "max_tlp": "amber"},
            },
            actor="t",
        )
        coll_id = coll.id
    engine.dispose()
    return Store(
        settings, settings.data_dir / "exchange.db", (init.admin_id, init.admin_key), (cred.id, key), coll_id
    )


def _count(store: Store) -> int:
    engine = make_engine(store.settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(ObjectVersion)) or 0)
    finally:
        engine.dispose()


def _bundle(n: int) -> dict[str, Any]:
    # Long descriptions so the envelope needs new pages whatever the file's free list holds.
    objects = [indicator(i, description="x" * 2000) for i in range(n)]
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}


def _post_both(client: TestClient, store: Store) -> tuple[Any, Any]:
    rest = client.post(
        "/api/v1/bundles",
        params={"collection": "faults"},
        json=_bundle(200),
        headers={"Authorization": f"Bearer {store.admin[1]}"},
    )
    taxii = client.post(
        store.objects_url(),
        content=orjson.dumps(envelope(_bundle(200)["objects"])),
        headers={"Content-Type": TAXII, "Accept": TAXII},
        auth=store.admin,
    )
    return rest, taxii


def _assert_503(rest: Any, taxii: Any, words: str) -> None:
    assert rest.status_code == 503, rest.text
    assert rest.headers["Retry-After"] == "5"
    assert rest.headers["Content-Type"].startswith("application/problem+json")
    assert words in rest.json()["detail"], rest.json()
    assert taxii.status_code == 503, taxii.text
    assert taxii.headers["Retry-After"] == "5"
    assert taxii.headers["Content-Type"].startswith("application/taxii+json")
    assert words in taxii.json()["description"], taxii.json()


@pytest.fixture
def full_disk(store: Store) -> Iterator[TestClient]:
    """The app, on a file that may not grow by a single page."""
    app = create_app(store.settings)
    engine = context_of(app).engine

    def no_room(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {int(pages)}")
        cursor.close()

    event.listen(engine, "connect", no_room)
    engine.dispose()
    with TestClient(app, raise_server_exceptions=False) as client:
        client.no_room = no_room  # type: ignore[attr-defined]
        yield client
    engine.dispose()


def test_a_full_disk_is_503_out_of_space_nothing_half_stored_then_recovers(full_disk, store) -> None:  # type: ignore[no-untyped-def]
    before = _count(store)
    rest, taxii = _post_both(full_disk, store)
    _assert_503(rest, taxii, "out of space")
    assert _count(store) == before, "a refused envelope left rows behind"
    # Reading goes on: the admin's pull records nothing; the partner's records its ledger rows
    # first, so it is either served or refused the same way, never a 500.
    assert full_disk.get(store.objects_url(), auth=store.admin, headers={"Accept": TAXII}).status_code == 200
    pulled = full_disk.get(store.objects_url(), auth=store.partner, headers={"Accept": TAXII})
    assert pulled.status_code in (200, 503), pulled.text
    assert full_disk.get("/healthz").status_code == 200
    # Room again (the limit lifted on new connections): the same app stores.
    engine = context_of(full_disk.app).engine  # type: ignore[attr-defined]
    event.remove(engine, "connect", full_disk.no_room)  # type: ignore[attr-defined]
    engine.dispose()
    rest, taxii = _post_both(full_disk, store)
    assert rest.status_code == 200, rest.text
    assert taxii.status_code == 202, taxii.text
    assert _count(store) == before + 400


def test_a_read_only_file_is_503_read_only_and_reads_go_on(store) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///file:{store.path.resolve()}?mode=ro&uri=true"
    app = create_app(store.settings.model_copy(update={"database_url": url}))
    before = _count(store)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            rest, taxii = _post_both(client, store)
            _assert_503(rest, taxii, "read-only")
            admin = client.get(store.objects_url(), auth=store.admin, headers={"Accept": TAXII})
            assert admin.status_code == 200, admin.text
            # A partner's page is evidence first: it cannot be served without its ledger rows.
            partner = client.get(store.objects_url(), auth=store.partner, headers={"Accept": TAXII})
            assert partner.status_code in (200, 503), partner.text
            if partner.status_code == 503 or partner.json().get("objects"):
                assert partner.status_code == 503 and "read-only" in partner.json()["description"]
            assert client.get("/healthz").status_code == 200
            listed = client.get("/api/v1/partners", headers={"Authorization": f"Bearer {store.admin[1]}"})
            assert listed.status_code == 200, listed.text
    finally:
        context_of(app).engine.dispose()
    assert _count(store) == before
