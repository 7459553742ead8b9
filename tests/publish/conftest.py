"""A live server whose /api/v1 publishing routes are exchange.publish's."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, func, select

from exchange.config import Settings
from exchange.intel.models import Collection, ObjectVersion
from exchange.main import create_app
from exchange.publish.routes import router
from tests.agreement.conftest import partners  # noqa: F401 (fixture)
from tests.conftest import LiveServer, free_port, start_uvicorn


@pytest.fixture(scope="session")
def publish_server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    """The real app under uvicorn, with our router matched before any other.

    exchange.main may still wire another package onto the same paths (it did when this was
    written); putting these routes first makes the tests exercise this package either way.
    """
    app = create_app(settings)
    before = len(app.router.routes)
    app.include_router(router)
    ours = app.router.routes[before:]
    app.router.routes[:] = [*ours, *app.router.routes[:before]]
    port = free_port()
    server, thread = start_uvicorn(app, port)
    yield LiveServer(url=f"http://127.0.0.1:{port}", settings=settings, engine=engine)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def api(publish_server: LiveServer, admin: tuple[str, str]) -> Iterator[httpx.Client]:
    """REST as the administrator (Bearer key)."""
    with httpx.Client(base_url=publish_server.url, headers={"Authorization": f"Bearer {admin[1]}"},
                      timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def analyst_key(publish_server: LiveServer) -> str:
    return publish_server.credential("analyst")[1]


@pytest.fixture
def analyst(publish_server: LiveServer, analyst_key: str) -> Iterator[httpx.Client]:
    """REST as an analyst (Bearer key)."""
    with httpx.Client(base_url=publish_server.url, headers={"Authorization": f"Bearer {analyst_key}"},
                      timeout=30) as client:
        yield client


@pytest.fixture
def coll(publish_server: LiveServer) -> Collection:
    """A fresh, empty collection for one test."""
    return publish_server.collection()


def stored_rows(server: LiveServer, coll: Collection) -> int:
    """How many object versions the collection holds."""
    with server.session() as db:
        return db.scalar(select(func.count()).where(ObjectVersion.collection_pk == coll.pk))
