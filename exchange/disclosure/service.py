"""The disclosure ledger: record what each partner credential received; answer who has what."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import BigInteger, Integer, Select, String, Table, func, insert, literal, select, union_all
from sqlalchemy.orm import Session

from exchange import metrics
from exchange.disclosure.models import Disclosure
from exchange.errors import ServiceUnavailableError
from exchange.intel import chain, query
from exchange.intel.models import DeletedVersion, ObjectVersion
from exchange.intel.timestamps import now_us, us_to_text
from exchange.partner.models import Partner

CHANNELS = ("taxii", "export", "push")


@dataclass(frozen=True)
class Served:
    object_version_pk: int
    stix_id: str
    version: str
    collection_pk: int


def record(
    db: Session,
    *,
    partner_pk: int | None,
    credential_id: str | None,
    requested_by: str | None,
    served: Iterable[Served],
    channel: str,
) -> int:
    """Add one ledger row per object version served to a partner (through exchange.sharing.outbound)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    at = now_us()
    rows = [
        {
            "object_version_pk": s.object_version_pk,
            "stix_id": s.stix_id,
            "version": s.version,
            "collection_pk": s.collection_pk,
            "partner_pk": partner_pk,
            "credential_id": credential_id,
            "requested_by": requested_by,
            "channel": channel,
            "at_us": at,
        }
        for s in served
    ]
    if rows:
        # Core executemany: the ORM bulk path costs several times more for a 1,000-row page.
        db.execute(insert(cast(Table, Disclosure.__table__)), rows)
        metrics.OBJECTS_SERVED.inc(len(rows), channel=channel)
    return len(rows)


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
    """One ledger row per entry of `object_version_pks` served to a partner, in one statement.

    The database copies each version's id and version from object_version itself: one
    INSERT ... SELECT by primary key over the keys bound as a single array, so a page's ledger
    costs one statement however many objects it holds (it is written before every partner page
    is answered). A version deleted since it was read would leave its row out: then this raises
    ServiceUnavailableError (answered 503 with Retry-After), the caller's transaction is rolled
    back and the page is not served.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    ov = ObjectVersion
    at = now_us()
    table = cast(Table, Disclosure.__table__)
    # A version listed twice gets two rows, as it was delivered twice: one statement per repeat.
    pending = Counter(int(pk) for pk in object_version_pks)
    written = 0
    while pending:
        batch = list(pending)
        source = select(
            ov.pk,
            ov.stix_id,
            ov.version_text,
            literal(collection_pk, Integer()),
            literal(partner_pk, Integer()),
            literal(credential_id, String()),
            literal(requested_by, String()),
            literal(channel, String()),
            literal(at, BigInteger()),
        ).where(query.among(db, ov.pk, batch))
        statement = insert(table).from_select(_COLUMNS, source).execution_options(preserve_rowcount=True)
        inserted = db.execute(statement).rowcount  # type: ignore[attr-defined]
        if inserted != len(batch):
            raise ServiceUnavailableError(
                "an object of this page was deleted while the page was assembled; try again"
            )
        written += inserted
        pending = Counter({pk: n - 1 for pk, n in pending.items() if n > 1})
    if written:
        metrics.OBJECTS_SERVED.inc(written, channel=channel)
    return written


# The ledger's columns in the order record_versions writes them.
_COLUMNS = (
    "object_version_pk",
    "stix_id",
    "version",
    "collection_pk",
    "partner_pk",
    "credential_id",
    "requested_by",
    "channel",
    "at_us",
)


def version_pks(stix_ids: Sequence[str]) -> Select[tuple[int]]:
    """The pks of every version of these objects, stored or deleted: what ledger rows name them by
    (the ledger has no index on the STIX id; see exchange.disclosure.models)."""
    ids = sorted(set(stix_ids))
    return union_all(
        select(ObjectVersion.pk).where(ObjectVersion.stix_id.in_(ids)),
        select(DeletedVersion.pk).where(DeletedVersion.stix_id.in_(ids)),
    )  # type: ignore[return-value]


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
    rows = db.execute(
        select(
            Partner.slug,
            Disclosure.credential_id,
            Disclosure.requested_by,
            Disclosure.version,
            Disclosure.channel,
            func.min(Disclosure.at_us).label("first_at"),
            func.max(Disclosure.at_us).label("last_at"),
            func.count().label("times"),
        )
        .join(Partner, Partner.pk == Disclosure.partner_pk, isouter=True)
        .where(Disclosure.object_version_pk.in_(version_pks([stix_id])))
        .group_by(
            Partner.slug,
            Disclosure.credential_id,
            Disclosure.requested_by,
            Disclosure.version,
            Disclosure.channel,
        )
        .order_by(Partner.slug, Disclosure.version)
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
