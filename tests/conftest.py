"""Shared fixtures: settings, migrated engines on SQLite and PostgreSQL, live servers."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator

import httpx
import hypothesis
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from exchange.audit import anchor as audit_anchor
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.main import create_app
from exchange.signing import KeyRing, default_directory
from feeds.launcher import Launcher
from tests.support.databases import postgres_admin_url, throwaway_postgres
from tests.support.partners import Partners
from tests.support.taxii import TAXII, LiveServer, free_port, start_uvicorn

# Hypothesis judges what a property holds, not how fast this machine is: no deadline per example,
# and slow input generation (a loaded CI machine) is not a failure.
hypothesis.settings.register_profile(
    "exchange", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("exchange")

# The feed servers and feed fixtures, shared by the feed, adversarial and intel tests.
pytest_plugins = ["tests.support.feeds"]

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 and EXCHANGE_TEST_POSTGRES_URL unset")
    name = f"exchange_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("EXCHANGE_TEST_POSTGRES_URL"):
            raise
        pytest.skip(f"cannot create a PostgreSQL test database: {exc}")
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def settings(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Settings:
    data_dir = tmp_path_factory.mktemp(f"data-{backend}")
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
    return Settings(
        data_dir=data_dir,
        database_url=url,
        secret_key="test-secret-" + "x" * 40,
        max_content_length=2 * 1024 * 1024,
        max_page_size=1000,
        # The suite's shared servers take thousands of requests and failed logins from one
        # address; tests/limits checks the limits with servers of their own.
        rate_limit_per_minute=0,
        login_failures_per_minute=1_000_000,
    )


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    settings.ensure_data_dir()
    eng = make_engine(settings.sqlalchemy_url)
    # Signed audit events, as every process of the exchange writes them.
    audit_anchor.attach(eng, KeyRing(default_directory(settings)))
    migrate(eng)
    with session_scope(make_session_factory(eng), write=True) as db:
        initialise(db, settings)
    yield eng
    eng.dispose()


@pytest.fixture(params=BACKENDS)
def empty_database(request, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database with no tables yet: a SQLite file, or a new PostgreSQL database (migration and
    schema-check tests build on it)."""
    if request.param == "sqlite":
        path = tmp_path / "empty.db"
        sqlite3.connect(path).close()
        yield f"sqlite:///{path}"
        return
    with throwaway_postgres("exchange_empty") as url:
        yield url


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture(scope="session")
def live_server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    """The real app under uvicorn on a free 127.0.0.1 port."""
    port = free_port()
    server, thread = start_uvicorn(create_app(settings, feeds=Launcher), port)
    yield LiveServer(url=f"http://127.0.0.1:{port}", settings=settings, engine=engine)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def admin(live_server: LiveServer) -> tuple[str, str]:
    return live_server.credential("admin")


@pytest.fixture
def http(live_server, admin) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """Plain HTTP as the admin, with the TAXII Accept header."""
    with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=30) as client:
        yield client


@pytest.fixture
def env(tmp_path, settings, engine):  # type: ignore[no-untyped-def]
    """Environment for running the `exchange` command on the test database, with its own data dir
    but the test exchange's signing keys and secret (as a real CLI shares the server's): audit events the
    command appends are then signed by a key the live server's audit check knows."""
    from exchange.signing import default_directory
    from tests.support.cli import environment

    return environment(
        tmp_path / "data",
        settings.database_url,
        EXCHANGE_SIGNING_KEY_DIR=str(default_directory(settings)),
        EXCHANGE_SECRET_KEY=settings.resolved_secret().decode(),
    )


@pytest.fixture
def cli_env(tmp_path, settings, engine):  # type: ignore[no-untyped-def]
    """The `exchange` command's environment on the live server's own database (SQLite or
    PostgreSQL), with its secret and signing keys."""
    from tests.support.cli import environment

    data = tmp_path / "data"
    data.mkdir()
    return environment(
        data,
        settings.sqlalchemy_url,
        EXCHANGE_SIGNING_KEY_DIR=str(default_directory(settings)),
        EXCHANGE_SECRET_KEY=settings.resolved_secret().decode(),
    )


@pytest.fixture
def coll(live_server):  # type: ignore[no-untyped-def]
    """A fresh, empty collection for one test."""
    return live_server.collection()


@pytest.fixture
def partners(live_server: LiveServer) -> Partners:
    """Partners with agreements on the live server's database."""
    return Partners(live_server)
