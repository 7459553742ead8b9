"""`contains_text`: `column` holds a text exactly, on SQLite and PostgreSQL (no LIKE patterns)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from exchange.database.texts import contains_text
from exchange.intel.models import ApiRoot


def _names(db: Session, needle: str) -> list[str]:
    query = (
        select(ApiRoot.name)
        .where(ApiRoot.name.startswith("texts-"), contains_text(ApiRoot.description, needle))
        .order_by(ApiRoot.name)
    )
    return list(db.scalars(query))


def _add(db: Session, described: dict[str, str]) -> None:
    db.add_all([ApiRoot(name=n, title=n, description=d, max_content_length=1) for n, d in described.items()])
    db.flush()


def test_only_texts_holding_the_needle_match(db: Session) -> None:
    _add(db, {"texts-a": ",cert-in,cert-fr,", "texts-b": ",cert-fr,", "texts-c": ",cert-inx,"})
    assert _names(db, ",cert-in,") == ["texts-a"]
    assert _names(db, ",cert-fr,") == ["texts-a", "texts-b"]
    assert _names(db, ",cert-de,") == []


def test_pattern_characters_are_characters_and_case_counts(db: Session) -> None:
    # LIKE would read % and _ as wildcards, and SQLite's LIKE folds ASCII case.
    _add(db, {"texts-d": ",certxin,", "texts-e": ",CERT-IN,", "texts-f": ",cert_in,", "texts-g": "100%"})
    assert _names(db, ",cert_in,") == ["texts-f"]
    assert _names(db, ",cert-in,") == []
    assert _names(db, "%") == ["texts-g"]
    assert _names(db, ",CERT-IN,") == ["texts-e"]


def test_quotes_backslashes_and_non_ascii_match_exactly(db: Session) -> None:
    _add(db, {"texts-h": "it's", "texts-i": "back\\slash", "texts-j": "ünï-côde"})
    assert _names(db, "it's") == ["texts-h"]
    assert _names(db, "\\") == ["texts-i"]
    assert _names(db, "ünï") == ["texts-j"]
    assert _names(db, "uni") == []


def test_statements_that_differ_only_in_their_needle_keep_their_own_values(
    db: Session, engine: Engine
) -> None:
    # One compiled (cached) statement for every partner's audience test; each run its own needle.
    _add(db, {"texts-k": ",cert-k,", "texts-l": ",cert-l,"})
    assert _names(db, ",cert-k,") == ["texts-k"]
    assert _names(db, ",cert-l,") == ["texts-l"]
    first = select(ApiRoot.name).where(contains_text(ApiRoot.description, "k"))
    second = select(ApiRoot.name).where(contains_text(ApiRoot.description, "l"))
    assert first._generate_cache_key() == second._generate_cache_key()
    compiled = str(first.compile(engine))
    assert compiled == str(second.compile(engine))
    assert "LIKE" not in compiled.upper()


def test_an_empty_needle_is_refused() -> None:
    with pytest.raises(ValueError, match="needle"):
        contains_text(ApiRoot.description, "")
