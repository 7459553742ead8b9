"""`one_of`: `column IN texts` with the texts bound as one value, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from exchange.database.lists import one_of
from exchange.intel.models import ApiRoot


def _names(db: Session, texts: list[str]) -> list[str]:
    query = select(ApiRoot.name).where(one_of(ApiRoot.name, texts)).order_by(ApiRoot.name)
    return list(db.scalars(query))


def test_rows_whose_value_is_in_the_list_and_only_those(db: Session) -> None:
    db.add_all([ApiRoot(name=n, title=n, max_content_length=1) for n in ("lists-a", "lists-b", "lists-c")])
    db.flush()
    assert _names(db, ["lists-a", "lists-c", "lists-zzz"]) == ["lists-a", "lists-c"]
    assert _names(db, []) == []


def test_statements_that_differ_only_in_their_lists_keep_their_own_values(
    db: Session, engine: Engine
) -> None:
    # Built alike, they share one compiled (cached) statement: each must still run with its
    # own list, or a grant's types would answer another grant's query.
    db.add_all([ApiRoot(name=n, title=n, max_content_length=1) for n in ("lists-d", "lists-e")])
    db.flush()
    assert _names(db, ["lists-d"]) == ["lists-d"]
    assert _names(db, ["lists-e"]) == ["lists-e"]
    first = select(ApiRoot.name).where(one_of(ApiRoot.name, ["lists-d"]))
    second = select(ApiRoot.name).where(one_of(ApiRoot.name, ["lists-e"]))
    assert first._generate_cache_key() == second._generate_cache_key()
    assert str(first.compile(engine)) == str(second.compile(engine))


def test_texts_with_quotes_and_json_characters_match_exactly(db: Session) -> None:
    odd = ['lists-"quoted"', "lists-it's", "lists-back\\slash", "lists-[1,2]", "lists-ünï"]
    db.add_all([ApiRoot(name=n, title=n, max_content_length=1) for n in odd])
    db.flush()
    assert _names(db, odd) == sorted(odd)
    assert _names(db, ["lists-its", 'lists-"quoted']) == []
