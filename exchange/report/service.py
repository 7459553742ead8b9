"""Reports for staff: what each partner gave and got, the dashboard's figures, incident delivery.

Every figure is a grouped SQL count over the store and the disclosure ledger; nothing here
pages through rows in Python, so a report costs a few queries whatever the store holds.

- contributed: object versions stored by one of the partner's credentials (its accepted
  submissions; a refused object is never stored), dated by `date_added`: versions of objects
  it originated, and observables nobody else sent before it, never another party's object
  posted back as received;
- received: distinct object versions the ledger says the partner received (TAXII pulls,
  exports made for it, pushes to it), dated by the delivery; `deliveries` counts ledger rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import Integer, and_, cast, exists, func, select
from sqlalchemy.orm import Session, aliased

from exchange.agreement import service as agreement_service
from exchange.auth.models import Credential
from exchange.disclosure import service as disclosure
from exchange.disclosure.models import Delivery, Disclosure
from exchange.errors import BadRequestError, NotFoundError
from exchange.feed import service as feed_service
from exchange.incident import service as incident_service
from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from exchange.partner import service as partner_service
from exchange.partner.models import Partner
from exchange.report.schemas import (
    Dashboard,
    DayCount,
    FeedHealth,
    IncidentDelivery,
    IncidentObject,
    PartnerDashboard,
    PartnerReciprocity,
    PartnerSighting,
    PendingRevocation,
    Receipt,
    ReciprocityCell,
    ReciprocityReport,
    WindowFigures,
)
from policies.tlp import LEVELS, rank

DEFAULT_DAYS = 90
MAX_DAYS = 3660
EXPIRY_WARNING_DAYS = 60
DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch (the store's date_added and the ledger's at_us)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _parse_moment(name: str, text: str, *, end: bool) -> datetime:
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            # A date alone means the whole day: `until=2026-11-30` includes the 30th.
            if end and day == date.max:
                raise BadRequestError(f"{name}: {text!r} is out of range (the last day is 9999-12-30)")
            return datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        raise BadRequestError(
            f"{name}: {text!r} is not a date (2026-11-30) or a date and time (2026-11-30T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise BadRequestError(f"{name}: {text!r} needs a time zone, e.g. 2026-11-30T12:00:00Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadRequestError(f"{name}: {text!r} is out of range") from None


def window(
    since: str | None, until: str | None, *, now: datetime, default_days: int = DEFAULT_DAYS
) -> tuple[datetime, datetime]:
    """The report's [since, until) from text: a date (the whole day) or an ISO date and time;
    `until` defaults to now, `since` to `default_days` before `until`. BadRequestError otherwise."""
    end = _parse_moment("until", until, end=True) if until else now
    if since:
        start = _parse_moment("since", since, end=False)
    else:
        try:
            start = end - timedelta(days=default_days)
        except OverflowError:
            raise BadRequestError(
                f"until: {until!r} leaves no room for the default since ({default_days} days "
                "earlier, before year 1); give since too"
            ) from None
    # `until` as a date is the end of that day: since=2026-11-02&until=2026-11-01 is backwards too.
    if start > end or (until and len(until.strip()) == 10 and start >= end):
        raise BadRequestError(f"since ({start.isoformat()}) is after until ({end.isoformat()})")
    if end - start > timedelta(days=MAX_DAYS):
        raise BadRequestError(f"the window is longer than {MAX_DAYS} days; ask for a shorter one")
    return start, end


def _ratio(contributed: int, received: int) -> float | None:
    return round(contributed / received, 3) if received else None


def _collections(db: Session) -> dict[int, tuple[str, int]]:
    return {c.pk: (c.alias, rank(c.default_tlp)) for c in db.scalars(select(Collection))}


def _level(collections: dict[int, tuple[str, int]], collection_pk: int, tlp_rank: int | None) -> str:
    # Unmarked objects count at their collection's default level, as the read rules take them.
    return LEVELS[tlp_rank if tlp_rank is not None else collections.get(collection_pk, ("?", 2))[1]]


def _contributed(db: Session, start_us: int, end_us: int) -> Iterable[Any]:
    # What the partner brought: versions of objects it originated, and observables (no one
    # originates those) nobody else had sent before it. An echo, another party's object posted
    # back as it was received, is stored as a copy and counts for nobody (else a partner could
    # raise its ratio by re-posting what it pulls).
    earlier = aliased(ObjectVersion)
    sent_before_by_another = exists(
        select(earlier.pk).where(
            earlier.stix_id == ObjectVersion.stix_id,
            earlier.date_added_us < ObjectVersion.date_added_us,
            earlier.origin_partner_pk.is_distinct_from(Credential.partner_pk),
        )
    )
    own = (ObjectVersion.originator_partner_pk == Credential.partner_pk) | (
        ObjectVersion.originator_partner_pk.is_(None) & ~sent_before_by_another
    )
    return db.execute(
        select(
            Credential.partner_pk,
            ObjectVersion.collection_pk,
            ObjectVersion.tlp_rank,
            func.count().label("n"),
        )
        .join(Credential, Credential.id == ObjectVersion.added_by)
        .where(
            Credential.partner_pk.is_not(None),
            ObjectVersion.date_added_us >= start_us,
            ObjectVersion.date_added_us < end_us,
            own,
        )
        .group_by(Credential.partner_pk, ObjectVersion.collection_pk, ObjectVersion.tlp_rank)
    )


def _received(db: Session, start_us: int, end_us: int) -> Iterable[Any]:
    return db.execute(
        select(
            Delivery.partner_pk,
            Delivery.collection_pk,
            ObjectVersion.tlp_rank,
            func.count(func.distinct(Disclosure.object_version_pk)).label("n"),
            func.count().label("rows"),
        )
        .select_from(Delivery)
        .join(Disclosure, Disclosure.delivery_pk == Delivery.pk)
        .join(ObjectVersion, ObjectVersion.pk == Disclosure.object_version_pk)
        .where(Delivery.partner_pk.is_not(None), Delivery.at_us >= start_us, Delivery.at_us < end_us)
        .group_by(Delivery.partner_pk, Delivery.collection_pk, ObjectVersion.tlp_rank)
    )


def reciprocity(db: Session, *, since: datetime, until: datetime) -> ReciprocityReport:
    """Per partner, by collection and TLP: object versions it contributed and received in [since, until)."""
    if since > until:
        raise BadRequestError("since is after until")
    start_us, end_us = to_us(since), to_us(until)
    collections = _collections(db)
    # partner -> (collection, tlp) -> [contributed, received, deliveries]
    cells: dict[int, dict[tuple[str, str], list[int]]] = {}
    for row in _contributed(db, start_us, end_us):
        key = (
            collections.get(row.collection_pk, ("?", 2))[0],
            _level(collections, row.collection_pk, row.tlp_rank),
        )
        cells.setdefault(row.partner_pk, {}).setdefault(key, [0, 0, 0])[0] += row.n
    for row in _received(db, start_us, end_us):
        key = (
            collections.get(row.collection_pk, ("?", 2))[0],
            _level(collections, row.collection_pk, row.tlp_rank),
        )
        cell = cells.setdefault(row.partner_pk, {}).setdefault(key, [0, 0, 0])
        cell[1] += row.n
        cell[2] += row.rows
    partners = []
    for partner in partner_service.list_(db):
        mine = cells.get(partner.pk, {})
        order = sorted(mine, key=lambda k: (k[0], LEVELS.index(k[1])))
        contributed = sum(v[0] for v in mine.values())
        received = sum(v[1] for v in mine.values())
        partners.append(
            PartnerReciprocity(
                partner=partner.slug,
                name=partner.name,
                status=partner.status,
                contributed=contributed,
                received=received,
                deliveries=sum(v[2] for v in mine.values()),
                ratio=_ratio(contributed, received),
                cells=[
                    ReciprocityCell(
                        collection=k[0],
                        tlp=k[1],
                        contributed=mine[k][0],
                        received=mine[k][1],
                        deliveries=mine[k][2],
                    )
                    for k in order
                ],
            )
        )
    return ReciprocityReport(
        since=since,
        until=until,
        partners=partners,
        contributed=sum(p.contributed for p in partners),
        received=sum(p.received for p in partners),
    )


def reciprocity_rows(report: ReciprocityReport) -> list[dict[str, Any]]:
    """The report flattened to one row per partner, collection and TLP (for CSV)."""
    return [
        {
            "partner": p.partner,
            "collection": c.collection,
            "tlp": c.tlp,
            "contributed": c.contributed,
            "received": c.received,
            "deliveries": c.deliveries,
            "ratio": _ratio(c.contributed, c.received),
        }
        for p in report.partners
        for c in p.cells
    ]


def pending_revocations(
    db: Session, *, partner_pk: int | None = None, stix_ids: Sequence[str] | None = None
) -> list[tuple[int, str, int, str, str]]:
    """(partner_pk, stix_id, collection_pk, revoked version, last version received): objects a
    partner received whose revoked version it has not received (yet)."""
    revoked = aliased(ObjectVersion)
    got = aliased(ObjectVersion)
    later, later_delivery = aliased(Disclosure), aliased(Delivery)
    query = (
        select(
            Delivery.partner_pk,
            revoked.stix_id,
            revoked.collection_pk,
            revoked.version_text,
            func.max(got.version).label("last_version"),
        )
        .select_from(Disclosure)
        .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
        .join(got, got.pk == Disclosure.object_version_pk)
        .join(
            revoked,
            and_(
                revoked.stix_id == got.stix_id,
                # "+ 0": look the object up by its id (ix_object_version_stix_id); without
                # statistics SQLite would otherwise scan the collection's latest rows per row.
                revoked.collection_pk + 0 == got.collection_pk,
                revoked.is_latest.is_(True),
                revoked.revoked.is_(True),
            ),
        )
        .where(
            Delivery.partner_pk.is_not(None),
            ~exists(
                select(later.object_version_pk)
                .join(later_delivery, later_delivery.pk == later.delivery_pk)
                .where(
                    later_delivery.partner_pk == Delivery.partner_pk, later.object_version_pk == revoked.pk
                )
            ),
        )
        .group_by(Delivery.partner_pk, revoked.stix_id, revoked.collection_pk, revoked.version_text)
        .order_by(Delivery.partner_pk, revoked.stix_id)
    )
    if partner_pk is not None:
        query = query.where(Delivery.partner_pk == partner_pk)
    if stix_ids is not None:
        if not stix_ids:
            return []
        query = query.where(Disclosure.object_version_pk.in_(disclosure.version_pks(stix_ids)))
    return [(r[0], r[1], r[2], r[3], r[4]) for r in db.execute(query) if r[0] is not None]


def _last_delivery(db: Session, *, channel: str | None) -> dict[int, int]:
    query = select(Delivery.partner_pk, func.max(Delivery.at_us)).where(Delivery.partner_pk.is_not(None))
    if channel is not None:
        query = query.where(Delivery.channel == channel)
    rows = db.execute(query.group_by(Delivery.partner_pk)).tuples()
    return {pk: at for pk, at in rows if pk is not None}


def feed_health(db: Session) -> list[FeedHealth]:
    """Each feed's health, failures in a row and last run."""
    out = []
    for feed in feed_service.list_(db):
        last = feed_service.runs(db, feed, limit=1)
        run = last[0] if last else None
        out.append(
            FeedHealth(
                name=feed.name,
                kind=feed.kind,
                enabled=feed.enabled,
                health=feed.health,
                consecutive_failures=feed.consecutive_failures,
                last_run_status=run.status if run else None,
                last_run_started_at=run.started_at if run else None,
                last_run_finished_at=run.finished_at if run else None,
                last_run_new=run.new if run else None,
                last_run_failed=run.failed if run else None,
                last_error=run.error if run else None,
            )
        )
    return out


def added_per_day(db: Session, *, days: int, now: datetime) -> list[DayCount]:
    """Object versions added per UTC day over the last `days` days (today included), zeros kept."""
    if not 1 <= days <= MAX_DAYS:
        raise BadRequestError(f"days must be between 1 and {MAX_DAYS}")
    today = to_us(now) // DAY_US
    first = today - days + 1
    bucket = (ObjectVersion.date_added_us // DAY_US).label("day")
    counts = {
        int(day): (versions, int(new or 0))
        for day, versions, new in db.execute(
            select(
                bucket,
                func.count(),
                func.sum(cast(ObjectVersion.is_first, Integer)),
            )
            .where(ObjectVersion.date_added_us >= first * DAY_US)
            .group_by(bucket)
        )
    }
    return [
        DayCount(
            day=(_EPOCH + timedelta(days=d)).date(),
            versions=counts.get(d, (0, 0))[0],
            new_objects=counts.get(d, (0, 0))[1],
        )
        for d in range(first, today + 1)
    ]


def dashboard(db: Session, *, now: datetime, days: int = 30, sample: int = 5) -> Dashboard:
    """The figures of the staff dashboard: per partner, feed health, objects added per day."""
    windows = {n: reciprocity(db, since=now - timedelta(days=n), until=now) for n in (30, 90)}
    by_slug = {n: {p.partner: p for p in report.partners} for n, report in windows.items()}
    last_pull = _last_delivery(db, channel="taxii")
    last_any = _last_delivery(db, channel=None)
    collections = _collections(db)
    pending: dict[int, list[PendingRevocation]] = {}
    for partner_pk, stix_id, coll_pk, revoked_version, last_version in pending_revocations(db):
        pending.setdefault(partner_pk, []).append(
            PendingRevocation(
                stix_id=stix_id,
                collection=collections.get(coll_pk, ("?", 2))[0],
                revoked_version=revoked_version,
                last_received_version=last_version,
            )
        )
    partners = []
    for partner in partner_service.list_(db):
        doc = agreement_service.current_doc_for(db, partner.pk)
        days_left = (doc.valid_until - now.date()).days if doc else None
        mine = pending.get(partner.pk, [])
        partners.append(
            PartnerDashboard(
                partner=partner.slug,
                name=partner.name,
                status=partner.status,
                windows=[
                    WindowFigures(
                        days=n,
                        contributed=by_slug[n][partner.slug].contributed,
                        received=by_slug[n][partner.slug].received,
                        ratio=by_slug[n][partner.slug].ratio,
                    )
                    for n in (30, 90)
                ],
                last_pull=from_us(last_pull[partner.pk]) if partner.pk in last_pull else None,
                last_delivery=from_us(last_any[partner.pk]) if partner.pk in last_any else None,
                agreement_status=doc.status if doc else None,
                agreement_valid_until=doc.valid_until if doc else None,
                agreement_days_left=days_left,
                agreement_expiring=days_left is not None and days_left < EXPIRY_WARNING_DAYS,
                revocations_not_received=len(mine),
                revocations_sample=mine[:sample],
            )
        )
    return Dashboard(
        generated_at=now,
        partners=partners,
        feeds=feed_health(db),
        added_per_day=added_per_day(db, days=days, now=now),
    )


def _incident_ids(db: Session, incident_id: str) -> list[str]:
    """The incident, its report and every object any version of the report carried."""
    if not incident_id.startswith("incident--"):
        raise BadRequestError(f"{incident_id!r} is not an incident id (incident--<uuid>)")
    if (
        db.scalars(select(ObjectVersion.pk).where(ObjectVersion.stix_id == incident_id).limit(1)).first()
        is None
    ):
        raise NotFoundError(f"no incident {incident_id!r}")
    reports = incident_service.cert_report_ids(db, incident_id)
    ids = {incident_id: None, **dict.fromkeys(reports)}
    for body in db.scalars(select(ObjectVersion.body).where(ObjectVersion.stix_id.in_(reports))):
        for ref in orjson.loads(body).get("object_refs", []):
            if isinstance(ref, str):
                ids.setdefault(ref, None)
    # Objects that point at the incident itself (relationships, sightings of it) belong to it too.
    for (stix_id,) in db.execute(
        select(ObjectVersion.stix_id)
        .join(ObjectRef, ObjectRef.object_version_pk == ObjectVersion.pk)
        .where(ObjectRef.ref_id == incident_id, ObjectVersion.type == "relationship")
        .distinct()
    ):
        ids.setdefault(stix_id, None)
    return list(ids)


def incident_delivery(db: Session, incident_id: str) -> IncidentDelivery:
    """An incident's objects and TLP, who received which version, partners' sightings of them,
    and who received an object but not its revocation."""
    ids = _incident_ids(db, incident_id)
    collections = _collections(db)
    stats = {
        (r.stix_id, r.collection_pk): r.versions
        for r in db.execute(
            select(ObjectVersion.stix_id, ObjectVersion.collection_pk, func.count().label("versions"))
            .where(ObjectVersion.stix_id.in_(ids))
            .group_by(ObjectVersion.stix_id, ObjectVersion.collection_pk)
        )
    }
    order = {stix_id: i for i, stix_id in enumerate(ids)}
    latest = sorted(
        db.execute(
            select(
                ObjectVersion.stix_id,
                ObjectVersion.type,
                ObjectVersion.collection_pk,
                ObjectVersion.tlp_rank,
                ObjectVersion.version_text,
                ObjectVersion.revoked,
            ).where(ObjectVersion.stix_id.in_(ids), ObjectVersion.is_latest.is_(True))
        ),
        key=lambda r: (order[r.stix_id], r.collection_pk),
    )
    objects = [
        IncidentObject(
            stix_id=r.stix_id,
            type=r.type,
            collection=collections.get(r.collection_pk, ("?", 2))[0],
            tlp=_level(collections, r.collection_pk, r.tlp_rank),
            latest_version=r.version_text,
            revoked=r.revoked,
            versions=stats.get((r.stix_id, r.collection_pk), 1),
        )
        for r in latest
    ]
    named = disclosure.named_versions(ids)
    receipts = [
        Receipt(
            partner=r.slug,
            stix_id=r.stix_id,
            version=r.version,
            channel=r.channel,
            first_received=from_us(r.first_at),
            last_received=from_us(r.last_at),
            times=r.times,
        )
        for r in db.execute(
            select(
                Partner.slug,
                named.c.stix_id,
                named.c.version,
                Delivery.channel,
                func.min(Delivery.at_us).label("first_at"),
                func.max(Delivery.at_us).label("last_at"),
                func.count().label("times"),
            )
            .select_from(Disclosure)
            .join(named, named.c.pk == Disclosure.object_version_pk)
            .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
            .join(Partner, Partner.pk == Delivery.partner_pk)
            .group_by(Partner.slug, named.c.stix_id, named.c.version, Delivery.channel)
            .order_by(Partner.slug, named.c.stix_id, named.c.version)
        )
    ]
    sightings = []
    for r in db.execute(
        select(Partner.slug, ObjectVersion.collection_pk, ObjectVersion.body)
        .join(ObjectRef, ObjectRef.object_version_pk == ObjectVersion.pk)
        .join(Credential, Credential.id == ObjectVersion.added_by)
        .join(Partner, Partner.pk == Credential.partner_pk)
        .where(ObjectRef.ref_id.in_(ids), ObjectVersion.type == "sighting", ObjectVersion.is_latest.is_(True))
        .distinct()
    ):
        body = orjson.loads(r.body)
        if body.get("sighting_of_ref") not in order:
            continue
        sightings.append(
            PartnerSighting(
                partner=r.slug,
                sighting_id=body["id"],
                sighting_of=body["sighting_of_ref"],
                collection=collections.get(r.collection_pk, ("?", 2))[0],
                count=body.get("count"),
                last_seen=body.get("last_seen"),
            )
        )
    slugs = {p.pk: p.slug for p in partner_service.list_(db)}
    missing = [
        {"partner": slugs.get(pk, "?"), "stix_id": stix_id, "revoked_version": version}
        for pk, stix_id, _coll, version, _last in pending_revocations(db, stix_ids=ids)
    ]
    return IncidentDelivery(
        incident=incident_id,
        objects=objects,
        receipts=receipts,
        sightings=sorted(sightings, key=lambda s: (s.partner, s.sighting_id)),
        revocations_not_received=missing,
    )
