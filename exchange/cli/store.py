"""Finding the exchange a command works on: its data directory, database and signing keys.

Only `init`, `demo` and `serve` may create a data directory or a database, and only they and
`scheduler` migrate. Every other command opens what exists and refuses, naming what it looked
at, when there is nothing there or the schema is behind: run elsewhere, a command must not
"succeed" on a new empty exchange and print keys the running server has never heard of.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from exchange.config import Settings
    from exchange.signing import KeyRing

DEFAULT_DATA_DIR = "./exchange-data"


class StoreError(Exception):
    """The command cannot find the exchange it should work on; exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def data_dir_source(settings: Settings) -> str:
    """How the data directory was chosen, for messages."""
    from pathlib import Path

    if "data_dir" not in settings.model_fields_set:
        return f"the default {DEFAULT_DATA_DIR}, in the current directory {Path.cwd()}"
    variable = os.environ.get("EXCHANGE_DATA_DIR")
    if variable and Path(variable) == settings.data_dir:
        return "from EXCHANGE_DATA_DIR"
    return "from --data-dir"


WHERE_TO_POINT = (
    "Point the command at your exchange's data directory with --data-dir DIR, or set "
    "EXCHANGE_DATA_DIR=DIR, or run it from the directory that holds exchange-data/ (the default). "
    "To start a new exchange there, run `exchange init`."
)


def database_label(settings: Settings) -> str:
    """The database as a message may name it (a file path, or a URL without its password)."""
    sqlite_file = _sqlite_file(settings)
    if sqlite_file is not None:
        return str(sqlite_file)
    from sqlalchemy.engine import make_url

    return make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)


def _sqlite_file(settings: Settings) -> Path | None:
    from pathlib import Path

    url = settings.sqlalchemy_url
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


def require_database(settings: Settings) -> None:
    """Refuse when the SQLite file does not exist (connecting would create an empty one)."""
    sqlite_file = _sqlite_file(settings)
    if sqlite_file is None or sqlite_file.is_file():
        return  # a server database (PostgreSQL) exists elsewhere; its schema is checked next
    if settings.database_url:
        raise StoreError(
            f"no database file {sqlite_file} (from EXCHANGE_DATABASE_URL); this command does not create "
            "one. Fix EXCHANGE_DATABASE_URL, or run `exchange init` to start a new exchange there."
        )
    data_dir = settings.data_dir.resolve()
    if data_dir.is_dir():
        found = f"that directory has no database ({sqlite_file.name})"
    else:
        found = "that is not a directory" if data_dir.exists() else "that directory does not exist"
    raise StoreError(
        f"no exchange at {data_dir} ({data_dir_source(settings)}): {found}, "
        f"and this command does not create one.\n{WHERE_TO_POINT}"
    )


def check_schema(engine: Engine, settings: Settings) -> None:
    """Refuse unless the database is at the revision this code needs (no migration here)."""
    from sqlalchemy.exc import DBAPIError

    from exchange.database import revision

    try:
        with engine.connect() as conn:
            found = revision.current(conn)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise StoreError(f"cannot open the database {database_label(settings)}: {reason}") from None
    needed = revision.heads()
    if found == needed:
        return
    where = f"the database {database_label(settings)}"
    if not found:
        raise StoreError(f"{where} has no exchange schema: run `exchange init` first")
    if found <= revision.known():
        raise StoreError(
            f"{where} is at schema revision {', '.join(sorted(found))}, this exchange needs "
            f"{', '.join(sorted(needed))}: run `exchange init` to upgrade it"
        )
    raise StoreError(
        f"{where} is at schema revision {', '.join(sorted(found))}, which this version of the exchange "
        f"does not know (it needs {', '.join(sorted(needed))}); is the database newer than this code?"
    )


def anchored(engine: Engine, settings: Settings) -> Engine:
    """`engine`, made to sign the audit events its sessions append (exchange.audit.anchor)."""
    from exchange.audit import anchor
    from exchange.signing.keys import KeyRing, default_directory

    return anchor.attach(engine, KeyRing(default_directory(settings)))


def open_engine(settings: Settings) -> Engine:
    """An engine on the existing, up-to-date database (StoreError otherwise)."""
    from exchange.database.core import make_engine

    require_database(settings)
    engine = anchored(make_engine(settings.sqlalchemy_url), settings)
    try:
        check_schema(engine, settings)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def session(settings: Settings) -> Iterator[Session]:
    """One write transaction for a command, on the existing, up-to-date database."""
    from exchange.database.core import make_session_factory, session_scope

    engine = open_engine(settings)
    try:
        with session_scope(make_session_factory(engine), write=True) as db:
            yield db
    finally:
        engine.dispose()


def migrated_engine(settings: Settings, *, create: bool) -> Engine:
    """An engine on a schema brought up to date; `create` allows a new data directory and database."""
    from exchange.bootstrap import migrate
    from exchange.database.core import make_engine

    if create:
        try:
            settings.ensure_data_dir()
        except OSError as exc:
            raise StoreError(
                f"cannot create the data directory {settings.data_dir.resolve()} "
                f"({data_dir_source(settings)}): {exc.strerror}"
            ) from None
    else:
        require_database(settings)
    engine = anchored(make_engine(settings.sqlalchemy_url), settings)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextmanager
def migrated_session(settings: Settings, *, create: bool) -> Iterator[Session]:
    """One write transaction on a migrated schema (`init`, `demo`, `serve`, `scheduler`)."""
    from exchange.database.core import make_session_factory, session_scope

    engine = migrated_engine(settings, create=create)
    try:
        with session_scope(make_session_factory(engine), write=True) as db:
            yield db
    finally:
        engine.dispose()


def keyring(settings: Settings) -> KeyRing:
    """The exchange's existing keyring (EXCHANGE_SIGNING_KEY_DIR, else <data_dir>/signing)."""
    from exchange.signing.keys import METADATA_FILE, KeyRing, default_directory

    directory = default_directory(settings)
    if not (directory / METADATA_FILE).is_file():
        origin = (
            "from EXCHANGE_SIGNING_KEY_DIR"
            if settings.signing_key_dir
            else f"in the data directory, {data_dir_source(settings)}"
        )
        raise StoreError(
            f"no signing keys in {directory.resolve()} ({origin}), and this command does not create them.\n"
            f"{WHERE_TO_POINT}"
        )
    return KeyRing(directory)
