"""Which schema revision this code needs and which one a database is at, without importing Alembic.

Commands that only read or write rows check the revision instead of migrating: importing
Alembic and running its environment costs most of a second, and a schema change is `exchange
init`'s job (or `serve`'s, or `scheduler`'s).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, inspect, text

VERSIONS = Path(__file__).parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"

# Alembic's own script format: module-level `revision = "..."` and `down_revision = ... | None`.
_ASSIGNMENT = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


@lru_cache
def _scripts() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision, the revisions some script revises) as the migration scripts declare them."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in VERSIONS.glob("*.py"):
        found = {
            name: _QUOTED.findall(value) for name, value in _ASSIGNMENT.findall(script.read_text("utf-8"))
        }
        if not found.get("revision"):
            continue  # __init__.py and other helpers
        revisions.update(found["revision"])
        revised.update(found.get("down_revision") or [])
    return frozenset(revisions), frozenset(revised)


def known() -> frozenset[str]:
    """Every revision this code has a migration for."""
    return _scripts()[0]


def heads() -> frozenset[str]:
    """The revisions nothing revises: what `exchange init` brings a database to."""
    revisions, revised = _scripts()
    return revisions - revised


def current(conn: Connection) -> frozenset[str] | None:
    """The revisions a database is at; None when it has no exchange schema at all."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return frozenset(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
