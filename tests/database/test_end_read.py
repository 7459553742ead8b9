"""A request's read session ends committed, not rolled back: on PostgreSQL a ROLLBACK made
psycopg forget the statements it had prepared, and every partner page was parsed and planned
afresh. A session holding changes is still rolled back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, func, select, text

from exchange.database.core import end_read, make_engine, make_session_factory, session_scope
from exchange.partner.models import Partner


@pytest.fixture
def own_engine(settings, engine):  # type: ignore[no-untyped-def]  # engine: the migrated store
    own = make_engine(settings.sqlalchemy_url)
    yield own
    own.dispose()


def test_a_read_session_ends_committed(own_engine) -> None:  # type: ignore[no-untyped-def]
    ended: list[str] = []
    event.listen(own_engine, "commit", lambda _conn: ended.append("commit"))
    event.listen(own_engine, "rollback", lambda _conn: ended.append("rollback"))
    session = make_session_factory(own_engine)()
    assert session.scalar(select(func.count()).select_from(Partner)) is not None
    end_read(session)
    assert ended == ["commit"]


def test_a_session_holding_changes_is_rolled_back_not_committed(own_engine) -> None:  # type: ignore[no-untyped-def]
    factory = make_session_factory(own_engine)
    session = factory()
    slug = f"p-{uuid.uuid4().hex[:8]}"
    session.add(Partner(slug=slug, name="never stored", country="IN"))
    end_read(session)
    with session_scope(factory) as db:
        assert db.scalar(select(Partner).where(Partner.slug == slug)) is None


def test_prepared_statements_outlive_a_read_request(own_engine) -> None:  # type: ignore[no-untyped-def]
    if own_engine.dialect.name != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's (psycopg prepares a statement after five runs)")
    factory = make_session_factory(own_engine)
    session = factory()
    for _ in range(7):
        session.scalar(select(func.count()).select_from(Partner))
    end_read(session)
    with own_engine.connect() as conn:  # LIFO: the connection just returned
        kept = conn.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
    assert kept and kept >= 1
