"""Throw-away PostgreSQL databases for tests that need a store of their own."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from exchange.config import Settings

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str | None:
    """The PostgreSQL server to make throw-away databases on, or None to skip (with reason)."""
    url = os.environ.get("EXCHANGE_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return DEFAULT_PG
    except OSError:
        return None


@contextmanager
def throwaway_postgres(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards (skips without a server)."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 and EXCHANGE_TEST_POSTGRES_URL unset")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def own_store(backend: str, data_dir: Path, prefix: str) -> Iterator[Settings]:
    """Settings for a store of a test's own ("sqlite" in `data_dir`, or a throw-away PostgreSQL
    database), with its own secret: for tests that start and kill exchange processes on it."""
    import secrets

    from exchange.config import Settings

    def made(url: str | None) -> Settings:
        settings = Settings(data_dir=data_dir, database_url=url, secret_key=secrets.token_urlsafe(40))
        settings.ensure_data_dir()
        return settings

    if backend == "sqlite":
        yield made(None)
    else:
        with throwaway_postgres(prefix) as url:
            yield made(url)


def seed_partner(conn: Connection, pk: int, slug: str) -> None:
    """A partner row as the schema's early revisions hold it (migration tests write plain SQL)."""
    conn.execute(
        text(
            "INSERT INTO partner (pk, slug, name, country, contact, status, public_keys, created_at) "
            "VALUES (:pk, :slug, :name, 'IN', '', 'active', '[]', CURRENT_TIMESTAMP)"
        ),
        {"pk": pk, "slug": slug, "name": slug.upper()},
    )


def seed_collection(conn: Connection) -> None:
    """API root 1 and its collection 1, alias "c", in plain SQL (migration tests)."""
    conn.execute(
        text(
            "INSERT INTO api_root (pk, name, title, description, max_content_length) "
            "VALUES (1, 'root', 'r', '', 1000)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO collection (pk, id, api_root_pk, alias, title, description, default_tlp, "
            "last_date_added_us, created_at) VALUES (1, 'c1', 1, 'c', 't', '', 'green', 0, "
            "CURRENT_TIMESTAMP)"
        )
    )
