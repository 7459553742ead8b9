"""The one outbound pipeline: what a recipient may receive next, as it may receive it, signed,
and recorded in the disclosure ledger.

TAXII GET, bundle export and push delivery all call these functions, in this order:
`access_for` -> `next_page` (the grant's SQL predicates, then the `decide` gate) -> `bodies`
(redaction) -> `record` (the ledger, before anything is answered) -> `signed_envelope`.
Nothing that leaves the exchange for a partner is assembled anywhere else.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, bindparam, exists, not_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from exchange.auth.service import Principal
from exchange.disclosure import service as disclosure
from exchange.disclosure.models import Delivery, Disclosure
from exchange.intel import query
from exchange.intel.models import Collection, ObjectVersion, StreamRelease
from exchange.intel.query import AnyRow
from exchange.sharing import access, gate
from exchange.signing import KeyRing, attach_signature, canonical_bytes, canonical_envelope, sign_canonical

CHANNELS = disclosure.CHANNELS


@dataclass(frozen=True)
class Recipient:
    """Who receives what the pipeline assembles.

    `partner_pk` None means internal staff (nothing filtered, nothing recorded, nothing signed).
    `credential_id` is the credential the partner used, when it pulled with one (TAXII);
    exports and pushes have none. `requested_by` is who caused the delivery: the pulling
    credential, the analyst who exported, the administrator who ran a push, or "scheduler".
    """

    partner_pk: int | None
    partner_slug: str | None
    channel: str
    credential_id: str | None = None
    requested_by: str | None = None

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}")
        if (self.partner_pk is None) != (self.partner_slug is None):
            raise ValueError("a partner recipient needs both its pk and its slug")

    @property
    def is_internal(self) -> bool:
        return self.partner_pk is None

    @classmethod
    def for_principal(cls, principal: Principal, *, channel: str = "taxii") -> Recipient:
        """The caller of a request as a recipient (a partner credential, or staff)."""
        if principal.is_internal:
            return cls(None, None, channel, principal.credential_id, principal.credential_id)
        return cls(
            principal.partner_pk,
            principal.partner_slug,
            channel,
            credential_id=principal.credential_id,
            requested_by=principal.credential_id,
        )

    @classmethod
    def for_partner(cls, partner_pk: int, slug: str, *, channel: str, requested_by: str) -> Recipient:
        """A partner that receives without presenting a credential (export, push)."""
        return cls(partner_pk, slug, channel, credential_id=None, requested_by=requested_by)


def access_for(
    db: Session,
    recipient: Recipient | Principal,
    collection: Collection,
    *,
    cache: dict[Any, Any] | None = None,
) -> access.CollectionAccess | None:
    """The recipient's access to `collection` now, or None when it must not know it exists."""
    return access.collection_access(db, recipient, collection, cache=cache)


@dataclass
class Page:
    """One keyset page as the recipient may receive it.

    Positions are the recipient's date_added: for staff the stored one; for a partner the moment
    each version became visible to it (stored date_added plus its embargo, or the time of a
    release, see exchange.intel.release). Keyset cursors, `added_after`, the X-TAXII-Date-Added
    headers and manifests all speak of positions.
    """

    rows: list[AnyRow]
    more: bool
    positions: list[int] = field(default_factory=list)  # one per row served
    # Position of the last entry read, served or withheld: the next page starts after it.
    scanned_to: int | None = None

    @property
    def next_after(self) -> int | None:
        """Where the next page starts, when there is one."""
        return self.scanned_to if self.more else None

    @property
    def first_us(self) -> int | None:
        return self.positions[0] if self.positions else None

    @property
    def last_us(self) -> int | None:
        return self.positions[-1] if self.positions else None


def _merge(first: Sequence[Any], second: Sequence[Any]) -> tuple[Any, ...]:
    names = {c.key for c in first}
    return (*first, *(c for c in second if c.key not in names))


# A page entry: (position, branch, pk, row); branch 0 is a stored version, 1 a release for every
# partner, 2 a release for this partner. Entries sort by (position, branch, pk). Plain tuples:
# a page holds a thousand of them, and a dataclass's generated ordering costs milliseconds.
_Entry: TypeAlias = tuple[int, int, int, AnyRow]
_ORDER = operator.itemgetter(0, 1, 2)


def next_page(
    db: Session,
    *,
    grant: access.CollectionAccess,
    collection: Collection,
    flt: query.ObjectFilter,
    after_us: int | None,
    limit: int,
    columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    recipient: Recipient | None = None,
) -> Page:
    """Up to `limit` entries after position `after_us` (and `flt.added_after_us`) that the grant
    allows, in the order they became visible to the recipient: SQL first, then `decide`."""
    if grant.read_grant is None or recipient is None or recipient.is_internal:
        rows, more = query.page_by_date_added(
            db,
            collection_pk=collection.pk,
            flt=flt,
            after_us=after_us,
            limit=limit,
            columns=tuple(columns),
            extra=grant.predicates,
        )
        page = Page(rows=rows, more=more, positions=[r.date_added_us for r in rows])
        page.scanned_to = page.last_us
        return page
    return _partner_page(
        db,
        grant=grant,
        collection=collection,
        flt=flt,
        after=after_us,
        limit=limit,
        columns=columns,
        recipient=recipient,
    )


def stream_shift(grant: access.CollectionAccess) -> int:
    """How far a collection's stored date_added runs ahead of the partner's stream (its embargo)."""
    return grant.read_grant.embargo_us if grant.read_grant is not None else 0


def _release_shift(grant: access.CollectionAccess) -> int:
    # A release for every partner follows a late reference target, which may sit in any
    # collection the partner reads: it enters the stream once the longest embargo has passed.
    return max([cg.grant.embargo_us for cg in grant.all_grants] + [stream_shift(grant)])


def _not_received(recipient: Recipient) -> ColumnElement[bool]:
    # A release repeats nothing: a TAXII credential that already has the version skips it, and
    # so does a partner already sent it by export or push.
    return not_(exists(_received_by(recipient).where(Disclosure.object_version_pk == ObjectVersion.pk)))


def _received_by(recipient: Recipient) -> Select[int]:
    """The versions the recipient has received: by its credential when it pulled with one (TAXII),
    else by its partner (export, push)."""
    received = select(Disclosure.object_version_pk).join(Delivery, Delivery.pk == Disclosure.delivery_pk)
    if recipient.credential_id is not None:
        return received.where(Delivery.credential_id == recipient.credential_id)
    return received.where(Delivery.partner_pk == recipient.partner_pk)


def already_received(db: Session, recipient: Recipient, version_pks: Sequence[int]) -> set[int]:
    """Of `version_pks`, those the recipient has received before (as `_received_by` counts)."""
    if not version_pks:
        return set()
    return set(
        db.scalars(_received_by(recipient).where(query.among(db, Disclosure.object_version_pk, version_pks)))
    )


def _pending_probe() -> Select[bool, bool]:
    def pending(branch: ColumnElement[bool], prefix: str) -> ColumnElement[bool]:
        return exists(
            select(StreamRelease.pk).where(
                StreamRelease.collection_pk == bindparam("collection_pk", type_=Integer()),
                branch,
                StreamRelease.at_us > bindparam(f"{prefix}_after", type_=BigInteger()),
                StreamRelease.at_us <= bindparam(f"{prefix}_until", type_=BigInteger()),
            )
        )

    everyone = pending(StreamRelease.partner_pk.is_(None), "everyone")
    own = pending(StreamRelease.partner_pk == bindparam("partner_pk", type_=Integer()), "own")
    return select(everyone.label("everyone"), own.label("own"))


# Built once: every partner page asks it, and its bounds are bound parameters.
_PENDING = _pending_probe()
_UNBOUNDED = 2**62  # beyond every position: "no bound" for the probe's ranges


def _pending_releases(
    db: Session,
    *,
    collection_pk: int,
    partner_pk: int | None,
    lower: int | None,
    release_shift: int,
    now_us: int,
) -> tuple[bool, bool]:
    """Whether any release for every partner, and any for this one, lies in the page's range.

    The release queries carry the whole grant (closure included) and cost several milliseconds
    each even when they find nothing; this probe of the release index alone says when they would
    find nothing (their conditions include its own), which is almost always.
    """

    def bounds(offset: int) -> tuple[int, int]:
        after = -_UNBOUNDED if lower is None else lower - offset
        return after, (now_us - offset) if offset else _UNBOUNDED

    everyone_after, everyone_until = bounds(release_shift)
    own_after, own_until = bounds(0)
    found = (
        db.connection()
        .execute(
            _PENDING,
            {
                "collection_pk": collection_pk,
                "partner_pk": partner_pk,
                "everyone_after": everyone_after,
                "everyone_until": everyone_until,
                "own_after": own_after,
                "own_until": own_until,
            },
        )
        .one()
    )
    return bool(found.everyone), bool(found.own)


def _partner_page(
    db: Session,
    *,
    grant: access.CollectionAccess,
    collection: Collection,
    flt: query.ObjectFilter,
    after: int | None,
    limit: int,
    columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    recipient: Recipient,
) -> Page:
    cols = _merge(gate.GATE_COLUMNS, columns)
    floors = [v for v in (flt.added_after_us, after) if v is not None]
    lower = max(floors) if floors else None
    unfiltered = dataclasses.replace(flt, added_after_us=None)
    shift, release_shift = stream_shift(grant), _release_shift(grant)

    rows, _ = query.keyset_page(
        db,
        key=grant.sql_key,
        collection_pk=collection.pk,
        flt=unfiltered,
        after_us=None if lower is None else lower - shift,
        limit=limit + 1,  # as the releases below: enough to know whether more follow
        columns=cols,
        extra=grant.predicates,
    )
    entries: list[_Entry] = []
    if rows:
        # By position: a page is a thousand rows, and a Row's attribute lookup by name is dear.
        fields = rows[0]._fields
        added_at, pk_at = fields.index("date_added_us"), fields.index("pk")
        entries = [(r[added_at] + shift, 0, r[pk_at], r) for r in rows]

    def releases(branch: int, partner_pk: int | None, offset: int) -> list[_Entry]:
        where = [
            StreamRelease.collection_pk == collection.pk,
            StreamRelease.partner_pk.is_(None)
            if partner_pk is None
            else StreamRelease.partner_pk == partner_pk,
            *query.filter_predicates(unfiltered),
            *grant.predicates,
            _not_received(recipient),
        ]
        if lower is not None:
            where.append(StreamRelease.at_us > lower - offset)
        if offset:
            where.append(StreamRelease.at_us <= grant.now_us - offset)
        found = db.execute(
            select(*cols, StreamRelease.at_us.label("released_at_us"))
            .join(ObjectVersion, ObjectVersion.pk == StreamRelease.object_version_pk)
            .where(*where)
            .order_by(StreamRelease.at_us)
            .limit(limit + 1)
        ).all()
        return [(r.released_at_us + offset, branch, r.pk, r) for r in found]

    everyone, own = _pending_releases(
        db,
        collection_pk=collection.pk,
        partner_pk=recipient.partner_pk,
        lower=lower,
        release_shift=release_shift,
        now_us=grant.now_us,
    )
    merged = entries  # stored versions only: already in date_added order, each once
    if everyone or own:
        if everyone:
            entries += releases(1, None, release_shift)
        if own:
            entries += releases(2, recipient.partner_pk, 0)
        entries.sort(key=_ORDER)
        merged = []
        seen: set[int] = set()
        for entry in entries:
            if entry[2] in seen:
                continue  # the same version twice in one page (stored, then released): once
            seen.add(entry[2])
            merged.append(entry)
    chosen, more = merged[:limit], len(merged) > limit
    if more and chosen and merged[limit][0] == chosen[-1][0]:
        # Never end a page between two entries of one position: a client resuming from
        # X-TAXII-Date-Added-Last would skip the rest.
        tied = chosen[-1][0]
        cut = [e for e in chosen if e[0] != tied]
        chosen = cut or [e for e in merged if e[0] == tied]
        more = len(merged) > len(chosen)
    page = Page(rows=[], more=more, scanned_to=chosen[-1][0] if chosen else None)
    allowed = {id(r) for r in gate.check(db, [e[3] for e in chosen], grant)}
    for position, _, _, row in chosen:
        if id(row) in allowed:
            page.rows.append(row)
            page.positions.append(position)
    return page


def bodies(rows: Sequence[AnyRow], grant: access.CollectionAccess, *, exchange_identity: str) -> list[str]:
    """The canonical texts of `rows` as the recipient may receive them (redactions applied)."""
    return gate.body_texts(rows, grant, exchange_identity=exchange_identity)


def record(db: Session, recipient: Recipient, *, collection_pk: int, rows: Sequence[AnyRow]) -> int:
    """Ledger rows for what a partner recipient receives (staff reads are not disclosures), in
    `db`'s transaction."""
    if recipient.is_internal or not rows:
        return 0
    return disclosure.record_versions(db, **_delivery(recipient, collection_pk, rows))


def record_committed(
    factory: sessionmaker[Session],
    recipient: Recipient,
    *,
    collection_pk: int,
    rows: Sequence[AnyRow],
    under_way: Callable[[], None] = lambda: None,
) -> int:
    """`record`, in a transaction of its own committed when this returns (a TAXII page's
    ledger, written before the page is answered); `under_way` as in
    `disclosure.record_versions_committed` (called at once when there is nothing to record)."""
    if recipient.is_internal or not rows:
        under_way()
        return 0
    return disclosure.record_versions_committed(
        factory, **_delivery(recipient, collection_pk, rows), under_way=under_way
    )


def _version_pks(rows: Sequence[AnyRow]) -> list[int]:
    """The rows' version pks, read by position: by name, a Row's attribute lookup cost the
    ledger writer 0.3 ms of a thousand-row page, which the request waits out on PostgreSQL."""
    if not rows:
        return []
    at = rows[0]._fields.index("pk")
    return [row[at] for row in rows]


def _delivery(recipient: Recipient, collection_pk: int, rows: Sequence[AnyRow]) -> dict[str, Any]:
    return {
        "partner_pk": recipient.partner_pk,
        "credential_id": recipient.credential_id,
        "requested_by": recipient.requested_by,
        "channel": recipient.channel,
        "object_version_pks": _version_pks(rows),
        "collection_pk": collection_pk,
    }


def signed_envelope(
    members: dict[str, Any],
    texts: Sequence[str] | None,
    *,
    recipient: Recipient,
    keyring: KeyRing,
    cty: str,
    issuer: str,
) -> bytes:
    """RFC 8785 bytes of `members` (plus `texts` as "objects" when given), signed for a partner
    recipient: a detached JWS with `aud` = the partner, carried in the signature member."""
    canonical = canonical_envelope(members, texts) if texts is not None else canonical_bytes(members)
    if recipient.is_internal:
        return canonical
    token = sign_canonical(
        canonical, key=keyring.current(), cty=cty, aud=recipient.partner_slug or "", iss=issuer
    )
    return attach_signature(canonical, token)


def drop_received_releases(db: Session, recipient: Recipient, page: Page) -> Page:
    """`page` without the released versions the recipient has already received, checked in `db`.

    `next_page` leaves those out itself, by the ledger of the session it reads; a page read from
    a streaming replica sees the ledger as it was some moments ago, so the primary's ledger
    decides again. Versions served as stored (not through a release) are left alone: a client
    that pulls again from the start receives them again, as it asked.
    """
    if recipient.is_internal or not page.rows:
        return page
    released = {r.pk for r in page.rows if "released_at_us" in r._mapping}
    if not released:
        return page
    repeated = already_received(db, recipient, sorted(released))
    if not repeated:
        return page
    keep = [i for i, r in enumerate(page.rows) if not (r.pk in released and r.pk in repeated)]
    return dataclasses.replace(
        page, rows=[page.rows[i] for i in keep], positions=[page.positions[i] for i in keep]
    )
