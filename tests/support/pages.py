"""The pages' test exchange (SQLite, the demo data, an admin, an analyst and a partner key) and a
signed-in browser without a browser: the in-process client the page tests drive."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from exchange import demo
from exchange.agreement import service as agreement_service
from exchange.audit import anchor as audit_anchor
from exchange.auth import service as auth_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.partner import service as partner_service
from exchange.signing import KeyRing, default_directory


@dataclass
class Exchange:
    settings: Settings
    engine: Engine
    admin_key: str
    analyst_key: str
    partner_key: str

    def session(self):  # type: ignore[no-untyped-def]
        return session_scope(make_session_factory(self.engine), write=True)


def make_exchange(tmp_path_factory: pytest.TempPathFactory, **overrides: object) -> Exchange:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("ui-data"),
        secret_key="ui-test-secret-" + "y" * 40,
        ui_login_delay_seconds=0.3,
        ui_login_max_delay_seconds=0.6,
        scheduler_enabled=False,
        **overrides,  # type: ignore[arg-type]
    )
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    audit_anchor.attach(engine, KeyRing(default_directory(settings)))
    migrate(engine)
    with session_scope(make_session_factory(engine), write=True) as db:
        result = initialise(db, settings)
        demo.load(db, result.api_root)  # something for previews and look-ups to count
        _, admin_key = auth_service.create_credential(db, name="Ayesha", role="admin")
        _, analyst_key = auth_service.create_credential(db, name="Rahim", role="analyst")
        _, _, partner_key = partner_service.create(
            db, slug="cert-in", name="CERT-In", country="IN", actor="test"
        )
        agreement_service.apply(db, demo.agreement(), actor="test")
    return Exchange(settings, engine, admin_key, analyst_key, partner_key)


def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    # 127.0.0.1 as the host: the session cookie is bound to /ui on this host.
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


def sign_in(app, key: str) -> TestClient:  # type: ignore[no-untyped-def]
    browser = client(app)
    answer = browser.post("/ui/login", data={"key": key, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    return browser


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
