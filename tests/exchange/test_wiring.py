"""The app's wiring: one context, the feed launcher seam (fail closed when absent), role checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from exchange.auth import service as auth_service
from exchange.config import Settings
from exchange.context import context_of
from exchange.database.core import make_session_factory, session_scope
from exchange.errors import NotFoundError, ServiceUnavailableError
from exchange.feed import service as feed_service
from exchange.feed.launcher import FeedLauncher
from exchange.feed.schemas import FeedCreate
from exchange.main import create_app
from exchange.partner import service as partner_service
from exchange.signing import KeyRing
from feeds.launcher import Launcher


@dataclass
class Recorder:
    """A launcher that records what the routes asked of it; refuses options with "bad" set."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    def check_options(self, kind: str, options: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("check_options", (kind, options)))
        if "bad" in options:
            raise ValueError("'bad' is not an option")
        return options | {"checked": True}

    def start_feed(self, name: str, *, actor: str | None = None) -> int:
        self.calls.append(("start_feed", name))
        return 4242

    def start_push(self, slug: str, *, actor: str | None = None) -> None:
        self.calls.append(("start_push", slug))


@dataclass
class Keys:
    admin: dict[str, str]
    analyst: dict[str, str]
    partner: dict[str, str]


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Keys:
    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with session_scope(make_session_factory(engine), write=True) as db:
        _, admin = auth_service.create_credential(db, name="wiring admin", role="admin")
        _, analyst = auth_service.create_credential(db, name="wiring analyst", role="analyst")
        slug = f"w-{uuid.uuid4().hex[:8]}"
        _, _, partner = partner_service.create(db, slug=slug, name="W", country="IN", actor="test")
    return Keys(bearer(admin), bearer(analyst), bearer(partner))


@pytest.fixture(scope="module")
def unwired(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app as create_app builds it when no feed launcher is passed."""
    with TestClient(create_app(settings)) as client:
        yield client


def _feed(**extra: Any) -> dict[str, Any]:
    name = f"w-{uuid.uuid4().hex[:10]}"
    return {
        "name": name,
        "kind": "text",
        "url": "https://f.example.org/a.txt",
        "collection": "indicators",
    } | extra


def test_without_a_launcher_feed_and_push_changes_fail_closed(unwired, keys, engine) -> None:
    body = _feed(options={"not-an-option": 1})
    refused = unwired.post("/api/v1/feeds", json=body, headers=keys.admin)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "no feed launcher" in refused.json()["detail"]
    # Nothing went in unchecked.
    assert unwired.get(f"/api/v1/feeds/{body['name']}", headers=keys.admin).status_code == 404

    name = f"w-{uuid.uuid4().hex[:10]}"
    with session_scope(make_session_factory(engine), write=True) as db:
        feed_service.create(
            db,
            FeedCreate(name=name, kind="text", url="https://f.example.org/b.txt", collection="indicators"),
            actor="test",
            check_options=lambda kind, options: options,
        )
    changed = unwired.patch(f"/api/v1/feeds/{name}", json={"options": {"x": 1}}, headers=keys.admin)
    assert changed.status_code == 503
    assert unwired.get(f"/api/v1/feeds/{name}", headers=keys.admin).json()["options"] == {}
    assert unwired.post(f"/api/v1/feeds/{name}/run", headers=keys.admin).status_code == 503
    assert unwired.post("/api/v1/push/anyone/run", headers=keys.admin).status_code == 503
    # Reading and removing need no launcher.
    assert unwired.get("/api/v1/feeds", headers=keys.admin).status_code == 200
    assert unwired.delete(f"/api/v1/feeds/{name}", headers=keys.admin).status_code == 204


def test_the_role_check_comes_before_the_missing_launcher(unwired, keys) -> None:
    assert unwired.post("/api/v1/feeds", json=_feed(), headers=keys.analyst).status_code == 403
    assert unwired.post("/api/v1/push/anyone/run", headers=keys.partner).status_code == 403
    assert unwired.post("/api/v1/feeds/x/run").status_code == 401


@pytest.fixture(scope="module")
def recorded(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, Recorder]]:
    recorder = Recorder()

    def factory(*, settings: Settings, sessions: sessionmaker[Session], keyring: KeyRing) -> FeedLauncher:
        return recorder

    with TestClient(create_app(settings, feeds=factory)) as client:
        yield client, recorder


def test_with_a_launcher_routes_ask_it(recorded, keys) -> None:
    client, recorder = recorded
    body = _feed(options={"a": 1})
    created = client.post("/api/v1/feeds", json=body, headers=keys.admin)
    assert created.status_code == 201, created.text
    assert created.json()["options"] == {"a": 1, "checked": True}  # what the launcher returned is stored
    assert ("check_options", ("text", {"a": 1})) in recorder.calls

    bad = client.patch(f"/api/v1/feeds/{body['name']}", json={"options": {"bad": 1}}, headers=keys.admin)
    assert bad.status_code == 400 and "'bad' is not an option" in bad.json()["detail"]

    run = client.post(f"/api/v1/feeds/{body['name']}/run", headers=keys.admin)
    assert run.status_code == 202 and run.json() == {"feed": body["name"], "run": 4242, "status": "running"}
    pushed = client.post("/api/v1/push/cert-in/run", headers=keys.admin)
    assert pushed.status_code == 202 and ("start_push", "cert-in") in recorder.calls
    assert client.post("/api/v1/push/cert-in/run", headers=keys.analyst).status_code == 403
    client.delete(f"/api/v1/feeds/{body['name']}", headers=keys.admin)


def test_the_feeds_launcher_checks_options_for_real(settings, engine) -> None:
    with TestClient(create_app(settings, feeds=Launcher)) as client:
        ctx = context_of(client.app)  # type: ignore[arg-type]
        assert isinstance(ctx.feeds, Launcher) and ctx.sessions is ctx.feeds.sessions
        with pytest.raises(ValueError):
            ctx.feeds.check_options("text", {"no-such-option": 1})


def test_one_context_per_app(settings, engine) -> None:
    first, second = create_app(settings), create_app(settings)
    assert context_of(first) is not context_of(second)
    assert context_of(first).settings is settings and context_of(first).feeds is None
    with pytest.raises(RuntimeError, match="already has a context"):
        context_of(first).install(first)


# Handlers that no longer take the caller: the router (or route) checks the role.
ADMIN_ONLY = [
    ("GET", "/api/v1/partners"),
    ("GET", "/api/v1/partners/nobody"),
    ("GET", "/api/v1/partners/nobody/credentials"),
    ("GET", "/api/v1/agreements"),
    ("GET", "/api/v1/agreements/nobody"),
    ("GET", "/api/v1/agreements/nobody/versions"),
    ("GET", "/api/v1/agreements/nobody/diff?from=1&to=2"),
    ("GET", "/api/v1/agreements/nobody/preview"),
    ("POST", "/api/v1/agreements/preview"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/feeds"),
    ("GET", "/api/v1/feeds/nothing"),
    ("GET", "/api/v1/feeds/nothing/runs"),
    ("POST", "/api/v1/feeds/nothing/run"),
    ("GET", "/api/v1/scheduler"),
    ("GET", "/api/v1/push/nobody"),
    ("POST", "/api/v1/push/nobody/run"),
    # and some whose handlers still take the caller, for the record of who did it
    ("POST", "/api/v1/partners"),
    ("PUT", "/api/v1/agreements"),
    ("POST", "/api/v1/credentials/nothing/revoke"),
]
STAFF_ONLY = [
    ("GET", "/api/v1/observables?value=example.org"),
    ("GET", "/api/v1/objects/indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"),
    ("GET", "/api/v1/objects/indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f/sightings"),
    ("GET", "/api/v1/objects/indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f/recipients"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/incidents"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_admin_routes_refuse_analysts_and_partners(unwired, keys, method, path) -> None:
    assert unwired.request(method, path, json={}, headers=keys.analyst).status_code == 403
    assert unwired.request(method, path, json={}, headers=keys.partner).status_code == 403
    assert unwired.request(method, path, json={}).status_code == 401
    wrong = {"Authorization": "Bearer nothing.wrong"}
    assert unwired.request(method, path, json={}, headers=wrong).status_code == 401
    assert unwired.request(method, path, json={}, headers=keys.admin).status_code not in (401, 403)


@pytest.mark.parametrize(("method", "path"), STAFF_ONLY)
def test_staff_routes_refuse_partners(unwired, keys, method, path) -> None:
    assert unwired.request(method, path, json={}, headers=keys.partner).status_code == 403
    assert unwired.request(method, path, json={}).status_code == 401
    assert unwired.request(method, path, json={}, headers=keys.analyst).status_code not in (401, 403)


def test_the_feed_service_never_stores_options_unchecked(db) -> None:
    feed_in = FeedCreate(
        name=f"w-{uuid.uuid4().hex[:10]}", kind="text", url="https://f.example.org/c", collection="indicators"
    )
    with pytest.raises(ServiceUnavailableError, match="cannot be checked"):
        feed_service.create(db, feed_in, actor="test", check_options=None)
    with pytest.raises(NotFoundError):
        feed_service.get_by_name(db, feed_in.name)
