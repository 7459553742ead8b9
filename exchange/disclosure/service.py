"""The disclosure ledger: record what each partner credential received; answer who has what."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Exists,
    Insert,
    Select,
    Subquery,
    Table,
    bindparam,
    exists,
    func,
    insert,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session, sessionmaker

from exchange import metrics
from exchange.database.core import session_scope
from exchange.disclosure.models import Delivery, Disclosure
from exchange.errors import ServiceUnavailableError
from exchange.intel import chain, query
from exchange.intel.models import DeletedVersion, ObjectVersion
from exchange.intel.timestamps import now_us, us_to_text
from exchange.partner.models import Partner

CHANNELS = ("taxii", "export", "push")


def record_versions(
    db: Session,
    *,
    partner_pk: int | None,
    credential_id: str | None,
    requested_by: str | None,
    object_version_pks: Sequence[int],
    collection_pk: int,
    channel: str,
) -> int:
    """One delivery to a partner holding `object_version_pks`, in `db`'s transaction: its
    delivery row and one ledger row per entry, the keys bound as a single array (it is written
    before every partner page is answered). A version listed twice gets two rows, as it was
    delivered twice.

    The rows name versions by pk only (deleted_version keeps a deleted version's id and version
    under its pk). A version deleted since the page was read leaves the whole delivery out: then
    this raises ServiceUnavailableError (answered 503 with Retry-After) and the page is not
    served; the caller's transaction is rolled back.
    """
    return _record(
        db.connection(),
        _Delivered(partner_pk, credential_id, requested_by, channel, collection_pk),
        object_version_pks,
    )


def record_versions_committed(
    factory: sessionmaker[Session],
    *,
    partner_pk: int | None,
    credential_id: str | None,
    requested_by: str | None,
    object_version_pks: Sequence[int],
    collection_pk: int,
    channel: str,
    under_way: Callable[[], None] = lambda: None,
) -> int:
    """`record_versions` in a transaction of its own, committed when this returns.

    On PostgreSQL the delivery is one statement run in autocommit: one round trip, where a
    transaction of its own costs four (BEGIN, two statements, COMMIT), and a TAXII page's ledger
    is written in a thread beside the page's signature, which holds the interpreter between
    round trips. The statement is atomic: all of the delivery, or (a version deleted) none.

    `under_way` is called once the connection is held (and, on SQLite, the write lock), just
    before the rows are sent: a caller waiting for it knows the rest is the database's work.
    """
    delivered = _Delivered(partner_pk, credential_id, requested_by, channel, collection_pk)
    engine = factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        with session_scope(factory, write=True) as db:
            conn = db.connection()
            under_way()
            return _record(conn, delivered, object_version_pks)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        under_way()
        return _record(conn, delivered, object_version_pks)


@dataclass(frozen=True)
class _Delivered:
    """Who received a delivery, and how: the delivery row's columns but its time and size."""

    partner_pk: int | None
    credential_id: str | None
    requested_by: str | None
    channel: str
    collection_pk: int


def _record(conn: Connection, delivered: _Delivered, object_version_pks: Sequence[int]) -> int:
    if delivered.channel not in CHANNELS:
        raise ValueError(f"unknown channel {delivered.channel!r}")
    if not object_version_pks:
        return 0
    dialect = conn.dialect.name
    row = asdict(delivered) | {"at_us": now_us(), "objects": len(object_version_pks)}
    keys = query.key_list(dialect, object_version_pks)
    # Core statements built once per dialect: the ORM's insert path cost a page's ledger
    # milliseconds of the interpreter the signing thread needs.
    if dialect == "postgresql":
        inserted = conn.execute(_delivery_at_once(), row | {"keys": keys}).rowcount
    else:
        delivery = conn.execute(_DELIVERY, row).scalar_one()
        inserted = conn.execute(_items(dialect), {"delivery_pk": delivery, "keys": keys}).rowcount
    if inserted != len(object_version_pks):
        # Deleted since the page was read (or not yet replayed away on the replica it was read
        # from): a withdrawn object is not served, and the delivery is not recorded.
        raise ServiceUnavailableError(
            "an object of this page was deleted while the page was assembled; try again"
        )
    metrics.OBJECTS_SERVED.inc(len(object_version_pks), channel=delivered.channel)
    return len(object_version_pks)


_DELIVERIES = cast(Table, Delivery.__table__)
_DISCLOSURES = cast(Table, Disclosure.__table__)
_DELIVERY_COLUMNS = [name for name in _DELIVERIES.c.keys() if name != "pk"]
_DELIVERY = (
    insert(_DELIVERIES)
    .values({name: bindparam(name) for name in _DELIVERY_COLUMNS})
    .returning(_DELIVERIES.c.pk)
)


def _gone(key: ColumnElement[Any]) -> Exists:
    """Whether version `key` was deleted: a deleted version is in deleted_version and no longer
    in object_version (TAXII DELETE moves it). One probe per key into deleted_version's small
    index, where a probe into object_version's cost a PostgreSQL page about 4 ms
    (benchmarks/ledger_layout.py)."""
    return exists(
        select(DeletedVersion.pk).where(
            DeletedVersion.pk == key,
            ~exists(select(ObjectVersion.pk).where(ObjectVersion.pk == DeletedVersion.pk)),
        )
    )


@functools.cache
def _items(dialect: str) -> Insert:
    """INSERT INTO disclosure SELECT :delivery_pk, k FROM <each key of :keys> k WHERE version k was
    not deleted (the caller compares the count with the keys)."""
    key = query.each_key(dialect, "keys")
    return (
        insert(_DISCLOSURES)
        .from_select(
            ("delivery_pk", "object_version_pk"),
            select(bindparam("delivery_pk", type_=BigInteger()), key).where(~_gone(key)),
        )
        .execution_options(preserve_rowcount=True)
    )


@functools.cache
def _delivery_at_once() -> Insert:
    """PostgreSQL: the delivery row and its ledger rows in one statement, both only when no key
    names a deleted version (then it inserts nothing and counts 0):

        WITH delivered AS (INSERT INTO delivery ... SELECT :... WHERE NOT EXISTS
            (SELECT FROM unnest(:keys) WHERE <deleted>) RETURNING pk)
        INSERT INTO disclosure SELECT delivered.pk, k FROM delivered, unnest(:keys) k
    """
    probe = query.each_key("postgresql", "keys")
    delivered = (
        insert(_DELIVERIES)
        .from_select(
            _DELIVERY_COLUMNS,
            select(*(bindparam(name, type_=_DELIVERIES.c[name].type) for name in _DELIVERY_COLUMNS)).where(
                ~select(probe).where(_gone(probe)).exists()
            ),
        )
        .returning(_DELIVERIES.c.pk)
        .cte("delivered")
    )
    key = query.each_key("postgresql", "keys")
    return (
        insert(_DISCLOSURES)
        .from_select(
            ("delivery_pk", "object_version_pk"),
            select(delivered.c.pk, key).select_from(delivered.join(key.table, true())),
        )
        .execution_options(preserve_rowcount=True)
    )


def named_versions(stix_ids: Sequence[str]) -> Subquery:
    """The versions of these objects the ledger can name, stored or deleted, by pk: pk, stix_id,
    version (the ledger keeps only the pk; see exchange.disclosure.models)."""
    ids = sorted(set(stix_ids))
    return union_all(
        select(ObjectVersion.pk, ObjectVersion.stix_id, ObjectVersion.version_text.label("version")).where(
            ObjectVersion.stix_id.in_(ids)
        ),
        select(DeletedVersion.pk, DeletedVersion.stix_id, DeletedVersion.version_text.label("version")).where(
            DeletedVersion.stix_id.in_(ids)
        ),
    ).subquery("named_version")


def version_pks(stix_ids: Sequence[str]) -> Select[tuple[int]]:
    """The pks of every version of these objects, stored or deleted: what ledger rows name them by
    (the ledger keeps no STIX id; see exchange.disclosure.models)."""
    return select(named_versions(stix_ids).c.pk)


def recipients(db: Session, stix_id: str) -> dict:  # type: ignore[type-arg]
    """Who received which version of an object, and which recipients lack its newest version."""
    versions = [
        r.version_text
        for r in db.execute(
            select(ObjectVersion.version, ObjectVersion.version_text)
            .where(ObjectVersion.stix_id == stix_id)
            .distinct()
            .order_by(ObjectVersion.version)
        )
    ]
    named = named_versions([stix_id])
    rows = db.execute(
        select(
            Partner.slug,
            Delivery.credential_id,
            Delivery.requested_by,
            named.c.version,
            Delivery.channel,
            func.min(Delivery.at_us).label("first_at"),
            func.max(Delivery.at_us).label("last_at"),
            func.count().label("times"),
        )
        .select_from(Disclosure)
        .join(named, named.c.pk == Disclosure.object_version_pk)
        .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
        .join(Partner, Partner.pk == Delivery.partner_pk, isouter=True)
        .group_by(
            Partner.slug,
            Delivery.credential_id,
            Delivery.requested_by,
            named.c.version,
            Delivery.channel,
        )
        .order_by(Partner.slug, named.c.version)
    ).all()
    received = [
        {
            "partner": r.slug,
            "credential_id": r.credential_id,
            "requested_by": r.requested_by,
            "version": r.version,
            "channel": r.channel,
            "first_received": us_to_text(r.first_at),
            "last_received": us_to_text(r.last_at),
            "times": r.times,
        }
        for r in rows
    ]
    latest = versions[-1] if versions else None
    first = db.execute(
        select(
            ObjectVersion.origin,
            ObjectVersion.added_by,
            ObjectVersion.origin_partner_pk,
            ObjectVersion.originator_partner_pk,
        )
        .where(ObjectVersion.stix_id == stix_id)
        .order_by(ObjectVersion.date_added_us, ObjectVersion.pk)
        .limit(1)
    ).first()
    by_partner: dict[str, set[str]] = {}
    for r in received:
        by_partner.setdefault(r["partner"] or r["credential_id"] or "", set()).add(r["version"])
    missing = sorted(p for p, got in by_partner.items() if latest not in got)
    return {
        "id": stix_id,
        "came_from": chain.first_source(first, chain.partner_names(db)) if first is not None else None,
        "versions": versions,
        "latest": latest,
        "received": received,
        "not_yet_received_latest": missing,
    }
