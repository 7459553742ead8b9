"""Keyset-paged reads of stored object versions; every filter is a SQL predicate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, ColumnElement, Row, and_, delete, false, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from exchange.intel.models import ObjectVersion as OV  # noqa: N817 (short: it is in every SQL expression here)

# A result row of any width: the columns each caller selects differ.
AnyRow = Row[*tuple[Any, ...]]

VERSION_KEYWORDS = ("last", "first", "all")


@dataclass(frozen=True)
class ObjectFilter:
    """The TAXII match[...] filters and added_after, already validated and normalised.

    `versions` holds "last", "first", "all" and/or sortable version keys (see ingest).
    """

    added_after_us: int | None = None
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = ("last",)
    spec_versions: tuple[str, ...] = ()


def _predicates(flt: ObjectFilter) -> list[ColumnElement[bool]]:
    preds: list[ColumnElement[bool]] = []
    if flt.added_after_us is not None:
        preds.append(OV.date_added_us > flt.added_after_us)
    if flt.ids:
        preds.append(OV.stix_id.in_(flt.ids))
    if flt.types:
        preds.append(OV.type.in_(flt.types))
    if flt.spec_versions:
        preds.append(OV.spec_version.in_(flt.spec_versions))
    if "all" not in flt.versions:
        choices: list[ColumnElement[bool]] = []
        if "last" in flt.versions:
            choices.append(OV.is_latest.is_(True))
        if "first" in flt.versions:
            choices.append(OV.is_first.is_(True))
        exact = [v for v in flt.versions if v not in VERSION_KEYWORDS]
        if exact:
            choices.append(OV.version.in_(exact))
        preds.append(or_(*choices) if choices else false())
    return preds


def among(db: Session, column: Any, values: Sequence[int]) -> ColumnElement[bool]:
    """`column IN values` for a page's worth of integer keys, bound as one parameter.

    An expanding IN renders and binds a thousand parameters on every run; an array (PostgreSQL)
    or a JSON array read by json_each (SQLite) is one value, and the statement stays the same.
    """
    keys = [int(v) for v in values]
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        return column == func.any(literal(keys, ARRAY(BigInteger)))  # type: ignore[no-any-return]
    if dialect == "sqlite":
        each = func.json_each(literal(orjson.dumps(keys).decode())).table_valued("value")
        return column.in_(select(each.c.value))  # type: ignore[no-any-return]
    return column.in_(keys)  # type: ignore[no-any-return]


def filter_predicates(flt: ObjectFilter) -> list[ColumnElement[bool]]:
    """The filters as SQL predicates on object_version (for queries built elsewhere)."""
    return _predicates(flt)


def page_by_date_added(
    db: Session,
    *,
    collection_pk: int,
    flt: ObjectFilter,
    after_us: int | None,
    limit: int,
    columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]] | None = None,
    extra: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[AnyRow], bool]:
    """Up to `limit` rows in date_added order after `after_us`, and whether more follow."""
    cols = columns or (OV.date_added_us, OV.body)
    query = select(*cols).where(OV.collection_pk == collection_pk, *_predicates(flt), *extra)
    if after_us is not None:
        query = query.where(OV.date_added_us > after_us)
    rows = list(db.execute(query.order_by(OV.date_added_us).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def page_versions(
    db: Session,
    *,
    collection_pk: int,
    stix_id: str,
    flt: ObjectFilter,
    after_version: str | None,
    limit: int,
    extra: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[AnyRow], bool]:
    """One object's versions, oldest first, after `after_version`."""
    all_versions = ObjectFilter(
        added_after_us=flt.added_after_us, spec_versions=flt.spec_versions, versions=("all",)
    )
    query = select(OV.version, OV.version_text, OV.date_added_us).where(
        OV.collection_pk == collection_pk, OV.stix_id == stix_id, *_predicates(all_versions), *extra
    )
    if after_version is not None:
        query = query.where(OV.version > after_version)
    rows = list(db.execute(query.order_by(OV.version).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def object_exists(
    db: Session, *, collection_pk: int, stix_id: str, extra: Sequence[ColumnElement[bool]] = ()
) -> bool:
    """Whether any version of `stix_id` is stored in the collection (and visible)."""
    found = db.execute(
        select(OV.pk).where(OV.collection_pk == collection_pk, OV.stix_id == stix_id, *extra).limit(1)
    ).first()
    return found is not None


def delete_versions(db: Session, *, collection_pk: int, stix_id: str, flt: ObjectFilter) -> int:
    """Delete the versions of one object that match `flt`; returns how many went."""
    doomed = select(OV.pk).where(
        and_(OV.collection_pk == collection_pk, OV.stix_id == stix_id, *_predicates(flt))
    )
    pks = list(db.scalars(doomed))
    if pks:
        db.execute(delete(OV).where(OV.pk.in_(pks)))
    return len(pks)
