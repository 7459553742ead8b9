"""A PostgreSQL database that refuses writes (`default_transaction_read_only`, as a standby or a
database an administrator froze): writes are 503 "read-only" with Retry-After, reads go on."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from exchange.agreement import service as agreement_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.context import context_of
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.intel import service as intel_service
from exchange.main import create_app
from exchange.partner import service as partner_service
from tests.support.databases import throwaway_postgres
from tests.support.stix import envelope, indicator

pytestmark = pytest.mark.postgres
TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def frozen(tmp_path) -> Iterator[tuple[TestClient, tuple[str, str], str, tuple[str, str]]]:  # type: ignore[no-untyped-def]
    with throwaway_postgres("exchange_ro") as url:
        settings = Settings(
            data_dir=tmp_path / "data", database_url=url, secret_key=secrets.token_urlsafe(40)
        )
        settings.ensure_data_dir()
        engine = make_engine(url)
        migrate(engine)
        with session_scope(make_session_factory(engine), write=True) as db:
            init = initialise(db, settings)
            root = intel_service.get_api_root(db, settings.api_root)
            coll = intel_service.create_collection(db, api_root=root, alias="frozen", title="frozen")
            _, cred, key = partner_service.create(db, slug="cert-ro", name="RO CERT", country="IN", actor="t")
            agreement_service.apply(
                db,
                {
                    "partner": "cert-ro",
                    "title": "frozen",
                    "status": "active",
                    "valid_from": "2020-01-01",
                    "valid_until": "2099-01-01",
                    "read": {"collections": ["frozen"], "max_tlp": "amber"},
                },
                actor="t",
            )
        engine.dispose()
        assert init.admin_id and init.admin_key
        before = create_app(settings)  # one object stored while it still may be
        with TestClient(before) as client:
            stored = client.post(
                f"/taxii2/root/collections/{coll.id}/objects/",
                content=orjson.dumps(envelope([indicator(0)])),
                headers={"Content-Type": TAXII, "Accept": TAXII},
                auth=(init.admin_id, init.admin_key),
            )
            assert stored.status_code == 202, stored.text
        context_of(before).engine.dispose()
        name = make_url(url).database
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        admin.dispose()
        app = create_app(settings)
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                yield client, (init.admin_id, init.admin_key), coll.id, (cred.id, key)
        finally:
            context_of(app).engine.dispose()


def test_a_read_only_postgresql_database_is_503_read_only(frozen) -> None:  # type: ignore[no-untyped-def]
    client, admin, coll_id, partner = frozen
    objects = f"/taxii2/root/collections/{coll_id}/objects/"
    taxii = client.post(
        objects,
        content=orjson.dumps(envelope([indicator(1)])),
        headers={"Content-Type": TAXII, "Accept": TAXII},
        auth=admin,
    )
    assert taxii.status_code == 503, taxii.text
    assert taxii.headers["Retry-After"] == "5" and "read-only" in taxii.json()["description"]
    rest = client.post(
        "/api/v1/bundles",
        params={"collection": "frozen"},
        json={
            "type": "bundle",
            "id": "bundle--6f1b1b43-1f0c-4bcb-9a4e-5f1e0c7d1a11",
            "objects": [indicator(2)],
        },
        headers={"Authorization": f"Bearer {admin[1]}"},
    )
    assert rest.status_code == 503, rest.text
    assert rest.headers["Retry-After"] == "5" and "read-only" in rest.json()["detail"]
    assert client.get(objects, auth=admin, headers={"Accept": TAXII}).status_code == 200
    # The partner's page needs its ledger rows written first: refused the same way, not served.
    pulled = client.get(objects, auth=partner, headers={"Accept": TAXII})
    assert pulled.status_code == 503, pulled.text
    assert "read-only" in pulled.json()["description"]
    assert client.get("/healthz").status_code == 200
