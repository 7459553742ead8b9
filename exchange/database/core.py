"""Engine, sessions and the transaction boundary (services only flush; callers commit)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, text
from sqlalchemy.exc import DataError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from exchange.errors import BadRequestError, ExchangeError, ServiceUnavailableError

IMMEDIATE = "exchange_sqlite_immediate"
log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


def make_engine(
    url: str, *, busy_seconds: float = 30.0, connect_timeout: int | None = None, **kwargs: object
) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and real transactions. Its errors
    never quote their bound parameters.

    A statement that waits `busy_seconds` for a lock fails with OperationalError (SQLite's
    busy timeout, PostgreSQL's lock_timeout), which the API answers as 503 with Retry-After.
    `connect_timeout` (PostgreSQL, seconds) bounds a connection attempt to a host that does not
    answer (libpq waits for the operating system otherwise, minutes for a host that is gone).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_seconds}, hide_parameters=True, **kwargs)
        _install_sqlite_hooks(engine)
        return engine
    lock_timeout = f"-c lock_timeout={int(busy_seconds * 1000)}"
    connect_args: dict[str, object] = {"options": lock_timeout}
    if connect_timeout is not None:
        connect_args["connect_timeout"] = connect_timeout
    return create_engine(
        url,
        # A failed statement's text would quote every bound value (a key hash, a feed's
        # credentials) wherever it is logged or shown; the statement itself is enough.
        hide_parameters=True,
        pool_pre_ping=True,
        # The connection used last is used next: its prepared statements (psycopg prepares a
        # statement after five runs, and PostgreSQL settles on a generic plan five runs later)
        # stay warm, where a queue would spread a partner's pages over every pooled connection.
        pool_use_lifo=True,
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args,
        **kwargs,
    )


def _install_sqlite_hooks(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs; take it over.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Writers take the lock up front so a read-then-write transaction never hits
        # SQLITE_BUSY half-way through (and date_added stays strictly increasing).
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def session_scope(factory: Callable[[], Session], *, write: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error.

    `write=True` begins it at once with a write lock on SQLite (the session carries the
    option itself, so it holds whichever thread or context ends up using it).
    """
    session = factory()
    try:
        if write:
            session.connection(execution_options={IMMEDIATE: True})
        yield session
        session.commit()
    except BaseException:
        # A broken connection (the server restarted, the network dropped) cannot roll back
        # either: the original error is the one to report; `close` discards the connection.
        with suppress(DBAPIError):
            session.rollback()
        raise
    finally:
        close(session)


def close(session: Session) -> None:
    """End a session without raising: a connection that cannot even roll back is discarded.

    Closing rolls back what is left open; when the database went away meanwhile (PostgreSQL
    restarted under load) that rollback fails, and raising then would turn an answer already
    decided, or already sent, into an error.
    """
    try:
        session.close()
    except DBAPIError as exc:
        log.warning("discarding a database connection that could not roll back: %s", describe(exc))
        session.invalidate()


def end_read(session: Session) -> None:
    """End a request's read session: its transaction committed, then closed; never raises.

    It holds no changes, so committing ends it as a rollback would, but on PostgreSQL a ROLLBACK
    makes psycopg forget every statement it prepared on the connection (it cannot tell what the
    rollback undid): a partner's page statement was then parsed and planned afresh on every page,
    4.2 ms of its 8.2 ms in the server. A session holding ORM changes (none should) is rolled
    back, and one whose commit fails is closed as `close` does.
    """
    if not (session.new or session.dirty or session.deleted):
        try:
            session.commit()
        except SQLAlchemyError as exc:
            log.warning(
                "a read session could not commit: %s",
                describe(exc) if isinstance(exc, DBAPIError) else type(exc).__name__,
            )
    close(session)


def plan_for_current_size(db: Session) -> None:
    """On PostgreSQL, plan this transaction's statements for their parameters and the tables' size now.

    psycopg prepares a statement after five runs; a generic plan made while a table was small (the
    first feed run into an empty database) went on scanning the table whole once it held 100,000
    rows, 1.4 s per lookup. Ingest is where tables grow, so ingest transactions opt out; reads keep
    the cheaper cached plans (forcing custom plans everywhere doubled the cost of an empty page).
    """
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def refuses_writes(exc: DBAPIError) -> bool:
    """Whether the database refused a write because it is read-only (PostgreSQL reports that as
    an InternalError, SQLSTATE 25006, which the handlers would otherwise leave a 500)."""
    return _code(exc) in _READ_ONLY


def _code(exc: DBAPIError) -> str:
    orig = exc.orig
    return str(getattr(orig, "sqlite_errorname", None) or getattr(orig, "sqlstate", None) or "")


def as_domain_error(exc: DBAPIError) -> ExchangeError:
    """The client-facing error for a database failure the request did not cause by a bug.

    DataError: a value the database cannot hold or compare (PostgreSQL text refuses NUL, an
    integer out of range): the client's input. OperationalError: locked past the busy wait,
    unreachable, or missing: worth retrying. Neither message repeats the driver's text, which
    may quote the input or name the server.
    """
    if isinstance(exc, DataError):
        return BadRequestError(
            "the request holds a value the database cannot store or compare "
            "(such as a NUL character or a number out of range)"
        )
    retry = ServiceUnavailableError.retry_after_seconds
    code = _code(exc)
    if code in _FULL:
        return ServiceUnavailableError(
            f"the database is out of space, so nothing can be stored (or recorded) now; "
            f"an administrator must free disk space; try again in {retry} s"
        )
    if code in _READ_ONLY:
        return ServiceUnavailableError(
            f"the database is read-only, so nothing can be stored (or recorded) now; "
            f"an administrator must make it writable; try again in {retry} s"
        )
    return ServiceUnavailableError(f"the database is busy or unreachable; try again in {retry} s")


# SQLite result names and PostgreSQL SQLSTATEs for a full disk and a store that refuses writes
# (a read-only file or mount; a PostgreSQL standby or default_transaction_read_only).
_FULL = {"SQLITE_FULL", "53100"}
_READ_ONLY = {"SQLITE_READONLY", "SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_DBMOVED", "25006"}


def describe(exc: DBAPIError) -> str:
    """The driver's error class and SQLSTATE, for logs: never its text, which may quote parameters."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    return f"{type(orig).__name__}" + (f" ({state})" if state else "")


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (typed as a Result, it is a CursorResult at run time)."""
    return cast(CursorResult[Any], result).rowcount
