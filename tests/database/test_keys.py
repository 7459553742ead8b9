"""`among` and `each_key`: a page's integer keys bound as one text value, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from exchange.intel import query
from exchange.intel.models import ApiRoot


def _roots(db: Session, names: list[str]) -> list[int]:
    db.add_all([ApiRoot(name=n, title=n, max_content_length=1) for n in names])
    db.flush()
    return list(db.scalars(select(ApiRoot.pk).where(ApiRoot.name.in_(names)).order_by(ApiRoot.pk)))


def test_among_matches_exactly_the_listed_keys(db: Session) -> None:
    pks = _roots(db, ["keys-a", "keys-b", "keys-c"])
    chosen = [pks[0], pks[2], 10**12]
    found = db.scalars(select(ApiRoot.pk).where(query.among(db, ApiRoot.pk, chosen)).order_by(ApiRoot.pk))
    assert list(found) == [pks[0], pks[2]]
    assert list(db.scalars(select(ApiRoot.pk).where(query.among(db, ApiRoot.pk, [])))) == []


def test_each_key_yields_every_key_once_in_order_a_thousand_at_a_time(db: Session, engine: Engine) -> None:
    dialect = engine.dialect.name
    keys = [*range(10**10, 10**10 + 1000), 7, 7]  # large keys and a repeat survive as given
    each = query.each_key(dialect, "keys")
    rows = db.execute(select(each), {"keys": query.key_list(dialect, keys)}).scalars().all()
    assert list(rows) == keys


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_key_lists_take_integers_only(dialect: str) -> None:
    # The array literal is text: anything but an integer would be SQL's to parse.
    assert query.key_list(dialect, [3, 1, 2]) in ("{3,1,2}", "[3,1,2]")
    with pytest.raises(ValueError):
        query.key_list(dialect, ["1}; DROP TABLE disclosure; --"])  # type: ignore[list-item]
