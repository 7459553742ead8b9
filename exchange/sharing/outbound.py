"""The one outbound pipeline: what a recipient may receive next, as it may receive it, signed,
and recorded in the disclosure ledger.

TAXII GET, bundle export and push delivery all call these functions, in this order:
`access_for` -> `next_page` (the grant's SQL predicates, then the `decide` gate) -> `bodies`
(redaction) -> `record` (the ledger, before anything is answered) -> `signed_envelope`.
Nothing that leaves the exchange for a partner is assembled anywhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row
from sqlalchemy.orm import Session

from exchange.auth.service import Principal
from exchange.disclosure import service as disclosure
from exchange.intel import query
from exchange.intel.models import Collection
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
    """One keyset page as the recipient may receive it."""

    rows: list[Row[Any]]
    more: bool
    # Keyset position of the last row read, served or withheld: the next page starts after it.
    scanned_to: int | None = None
    # date_added span of the rows served (None when nothing is served).
    first_us: int | None = None
    last_us: int | None = None
    withheld: int = 0  # rows SQL chose that the second gate refused
    # What the recipient's clock adds to a stored date_added: its embargo. An embargoed object
    # enters the partner's stream when the embargo lifts, so filters, headers and manifests
    # speak of date_added + shift_us while keyset positions stay in stored time.
    shift_us: int = 0

    @property
    def next_after(self) -> int | None:
        """Where the next page starts, when there is one."""
        return self.scanned_to if self.more else None


def _merge(first: Sequence[Any], second: Sequence[Any]) -> tuple[Any, ...]:
    names = {c.key for c in first}
    return (*first, *(c for c in second if c.key not in names))


def next_page(
    db: Session,
    *,
    grant: access.CollectionAccess,
    collection: Collection,
    flt: query.ObjectFilter,
    after_us: int | None,
    limit: int,
    columns: Sequence[ColumnElement[Any]],
) -> Page:
    """Up to `limit` rows after `after_us` that the grant allows: SQL first, then `decide`.

    `flt.added_after_us` is in the recipient's time (see `Page.shift_us`); `after_us`, a keyset
    position from an earlier page, in stored time.
    """
    partner = grant.read_grant is not None
    shift = stream_shift(grant)
    if shift and flt.added_after_us is not None:
        flt = dataclasses.replace(flt, added_after_us=flt.added_after_us - shift)
    rows, more = query.page_by_date_added(
        db,
        collection_pk=collection.pk,
        flt=flt,
        after_us=after_us,
        limit=limit,
        columns=_merge(gate.GATE_COLUMNS, columns) if partner else tuple(columns),
        extra=grant.predicates,
    )
    page = Page(rows=rows, more=more, scanned_to=rows[-1].date_added_us if rows else None, shift_us=shift)
    if partner:
        page.rows = gate.check(db, rows, grant)
        page.withheld = len(rows) - len(page.rows)
    if page.rows:
        page.first_us = page.rows[0].date_added_us + shift
        page.last_us = page.rows[-1].date_added_us + shift
    return page


def stream_shift(grant: access.CollectionAccess) -> int:
    """How far the recipient's stream runs behind stored date_added (its embargo), in microseconds."""
    return grant.read_grant.embargo_us if grant.read_grant is not None else 0


def bodies(rows: Sequence[Row[Any]], grant: access.CollectionAccess, *, exchange_identity: str) -> list[str]:
    """The canonical texts of `rows` as the recipient may receive them (redactions applied)."""
    if grant.read_grant is None:
        return [r.body for r in rows]
    return [gate.body_text(r, grant, exchange_identity=exchange_identity) for r in rows]


def record(db: Session, recipient: Recipient, *, collection_pk: int, rows: Sequence[Row[Any]]) -> int:
    """Ledger rows for what a partner recipient receives (staff reads are not disclosures)."""
    if recipient.is_internal or not rows:
        return 0
    return disclosure.record(
        db,
        partner_pk=recipient.partner_pk,
        credential_id=recipient.credential_id,
        requested_by=recipient.requested_by,
        channel=recipient.channel,
        served=[disclosure.Served(r.pk, r.stix_id, r.version_text, collection_pk) for r in rows],
    )


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


def detached_signature(
    canonical: bytes, *, recipient: Recipient, keyring: KeyRing, cty: str, issuer: str
) -> str:
    """A detached JWS over bytes already canonical, for the recipient."""
    return sign_canonical(
        canonical, key=keyring.current(), cty=cty, aud=recipient.partner_slug or "", iss=issuer
    )
