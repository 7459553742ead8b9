"""ReadSessions: a replica that does not answer sends reads to the primary for a while, says so
once without its address, and is tried again afterwards. The replica here is a real PostgreSQL
URL on a port nobody listens on (refused at once); the primary is the test's own store."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from exchange.database.core import make_engine, make_session_factory
from exchange.database.replica import ReadSessions
from tests.support.taxii import free_port


class Counting:
    """A session factory that counts the sessions it makes."""

    def __init__(self, factory: Any) -> None:
        self.factory, self.made = factory, 0

    def __call__(self) -> Session:
        self.made += 1
        return self.factory()


@pytest.fixture
def session_factory(engine):  # type: ignore[no-untyped-def]  # engine: the migrated store
    return make_session_factory(engine)


@pytest.fixture
def unreachable() -> Any:
    engine = make_engine(
        f"postgresql+psycopg://exchange-reader@127.0.0.1:{free_port()}/nowhere", connect_timeout=2
    )
    yield Counting(make_session_factory(engine))
    engine.dispose()


def test_reads_go_to_the_primary_while_the_replica_is_down(
    unreachable, session_factory, engine, caplog
) -> None:  # type: ignore[no-untyped-def]
    primary = Counting(session_factory)
    reads = ReadSessions(unreachable, primary, retry_seconds=0.3)
    with caplog.at_level(logging.ERROR, logger="exchange.database.replica"):
        first = reads()
        try:
            assert first.execute(text("SELECT 1")).scalar() == 1
            assert first.get_bind() is engine
        finally:
            first.close()
        assert reads.replica_down and unreachable.made == 1 and primary.made == 1
        # Within the window the replica is not even tried.
        for _ in range(3):
            reads().close()
        assert unreachable.made == 1 and primary.made == 4
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "reads go to the primary" in said[0]
    assert "exchange-reader" not in said[0] and "127.0.0.1" not in said[0] and "nowhere" not in said[0]
    time.sleep(0.35)
    assert not reads.replica_down
    reads().close()  # tried again, still down: back to the primary
    assert unreachable.made == 2 and primary.made == 5 and reads.replica_down


def test_a_replica_that_answers_serves_the_reads(session_factory) -> None:  # type: ignore[no-untyped-def]
    replica, primary = Counting(session_factory), Counting(session_factory)
    reads = ReadSessions(replica, primary)
    reads().close()
    assert replica.made == 1 and primary.made == 0 and not reads.replica_down
