"""A throw-away exchange for one backend: fresh database, schema, admin key, server process."""

from __future__ import annotations

import secrets
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.servers import ServerProcess
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.intel import service
from exchange.intel.models import Collection

TAXII_MEDIA = "application/taxii+json;version=2.1"


def postgres_problem(admin_url: str) -> str | None:
    """Why PostgreSQL at `admin_url` cannot be used, or None when it can."""
    url = make_url(admin_url)
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=3,
        ):
            return None
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def postgres_version(admin_url: str) -> str:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def create_postgres_database(admin_url: str, stack: ExitStack) -> str:
    """A new empty database, dropped (even with connections open) when `stack` closes."""
    name = f"exchange_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    stack.callback(drop)
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


class Instance:
    """One exchange under test. Enter it in an ExitStack; leaving stops and removes everything."""

    def __init__(self, backend: str, workdir: Path, stack: ExitStack, *, pg_admin_url: str) -> None:
        self.backend = backend
        self.label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
        workdir.mkdir(parents=True, exist_ok=True)
        database_url = None
        if backend == "postgresql":
            database_url = create_postgres_database(pg_admin_url, stack)
        secret = secrets.token_urlsafe(40)
        self.settings = Settings(
            data_dir=workdir / "data", database_url=database_url, secret_key=secret, max_page_size=1000
        )
        self.settings.ensure_data_dir()
        self.engine: Engine = make_engine(self.settings.sqlalchemy_url)
        stack.callback(self.engine.dispose)
        self.factory = make_session_factory(self.engine)
        migrate(self.engine)
        with session_scope(self.factory, write=True) as db:
            init = initialise(db, self.settings)
        if not init.admin_id or not init.admin_key:
            raise RuntimeError("initialise() returned no admin key on a fresh database")
        self.auth = (init.admin_id, init.admin_key)
        self.server = ServerProcess(
            "exchange",
            ["--data-dir", str(self.settings.data_dir), "--database-url", database_url or ""],
            log_path=workdir / "server.log",
            env={"BENCH_SECRET_KEY": secret},
        )
        stack.callback(self.server.stop)
        self.startup_seconds = self.server.wait_ready("/healthz")
        self.client = httpx.Client(auth=self.auth, headers={"Accept": TAXII_MEDIA}, timeout=300)
        stack.callback(self.client.close)

    def collection(self, alias: str) -> Collection:
        with session_scope(self.factory, write=True) as db:
            root = service.get_api_root(db, self.settings.api_root)
            if root is None:
                raise RuntimeError(f"API root {self.settings.api_root!r} missing after initialise()")
            return service.create_collection(db, api_root=root, alias=alias, title=f"benchmark {alias}")

    def collection_url(self, coll: Collection) -> str:
        return f"{self.server.url}/taxii2/{self.settings.api_root}/collections/{coll.id}/"

    def objects_url(self, coll: Collection) -> str:
        return self.collection_url(coll) + "objects/"

    def server_alive(self) -> bool:
        return self.server.proc.poll() is None
