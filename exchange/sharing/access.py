"""Who may see and write which collection: one layer, checked before storage.

Internal staff (admin, analyst) read and write every collection. A partner credential gets
exactly what its organisation's agreement grants right now, as SQL predicates for reads and a
write grant for POSTs; anything else is invisible (404), never merely forbidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from exchange.agreement import service as agreement_service
from exchange.auth.service import Caller, Principal
from exchange.database.types import utcnow
from exchange.intel.models import Collection
from exchange.intel.timestamps import now_us
from exchange.partner import service as partner_service
from exchange.partner.models import Partner
from exchange.sharing import visibility
from policies.engine import ReadGrant, WriteGrant, read_grant, relayers_for
from policies.schemas import AgreementDoc


@dataclass(frozen=True)
class CollectionAccess:
    can_read: bool
    can_write: bool
    # Extra SQL predicates that restrict what the caller may read (sharing policy).
    predicates: Sequence[ColumnElement[bool]] = field(default_factory=tuple)
    read_grant: ReadGrant | None = None
    write_grant: WriteGrant | None = None
    collection_grant: visibility.CollectionGrant | None = None
    all_grants: Sequence[visibility.CollectionGrant] = ()
    now_us: int = 0
    # Originator control for this partner (whose objects may reach it, and how).
    relay: visibility.RelayScope | None = None
    # What `predicates` are built from (visibility.predicates_key); None: built for this moment.
    sql_key: tuple[Any, ...] | None = None


def collection_access(
    db: Session,
    principal: Caller,
    collection: Collection,
    *,
    cache: dict[Any, Any] | None = None,
) -> CollectionAccess | None:
    """The caller's access to `collection`, or None when it must not even know it exists."""
    if principal.is_internal:
        return CollectionAccess(can_read=True, can_write=True)
    if principal.partner_pk is None:
        return None
    cache = cache if cache is not None else {}
    # One request asks about the same collection several times (API-root visibility, then
    # the collection itself); building the closure predicates is the costly part, so once.
    key = ("access", collection.pk)
    if key not in cache:
        cache[key] = _partner_access(db, principal, collection, cache)
    found: CollectionAccess | None = cache[key]
    return found


def _partner_access(
    db: Session,
    principal: Caller,
    collection: Collection,
    cache: dict[Any, Any],
) -> CollectionAccess | None:
    now = utcnow()
    if principal.partner_pk is None:
        return None
    if "partner" not in cache:
        # Held for the request: the session's identity map keeps rows only while something refers
        # to them, and grants_for looks the partner up for every collection it is asked about.
        cache["partner"] = db.get(Partner, principal.partner_pk)
    if "doc" not in cache:
        cache["doc"] = agreement_service.current_doc_for(db, principal.partner_pk)
    doc = cache["doc"]
    read, write = agreement_service.grants_for(db, principal, collection, now=now, doc=doc)
    if read is None and write is None:
        return None
    if read is None:
        return CollectionAccess(can_read=False, can_write=True, write_grant=write)
    stamp = now_us()
    if "relay" not in cache:
        cache["relay"] = relay_scope(db, principal.partner_pk)
    if "grants" not in cache:
        cache["grants"] = _all_read_grants(db, principal, doc, now, cache["relay"])
    own = visibility.collection_grant(collection, read, cache["relay"])
    predicates = visibility.read_predicates(own, cache["grants"], now_us=stamp)
    return CollectionAccess(
        can_read=True,
        can_write=write is not None,
        predicates=predicates,
        read_grant=read,
        write_grant=write,
        collection_grant=own,
        all_grants=cache["grants"],
        now_us=stamp,
        relay=cache["relay"],
        sql_key=visibility.predicates_key(own, cache["grants"]),
    )


def _all_read_grants(db: Session, principal: Caller, doc, now, relay) -> list[visibility.CollectionGrant]:  # type: ignore[no-untyped-def]
    if doc is None or doc.read is None:
        return []
    grants = []
    for coll in db.scalars(select(Collection).where(Collection.alias.in_(doc.read.collections))):
        read, _ = agreement_service.grants_for(db, principal, coll, now=now, doc=doc)
        if read is not None:
            grants.append(visibility.collection_grant(coll, read, relay))
    return grants


def relay_scope(
    db: Session,
    partner_pk: int,
    *,
    docs: dict[int, AgreementDoc | None] | None = None,
    current: Sequence[tuple[Partner, AgreementDoc | None]] | None = None,
) -> visibility.RelayScope:
    """Originator control for one recipient, from every partner's current agreement (`current`,
    read here unless given; `docs` overrides some of them: what an agreement edit changes is
    worked out with both versions)."""
    rows = current if current is not None else agreement_service.current_docs(db)
    by_slug: dict[str, AgreementDoc] = {}
    pks: dict[str, int] = {}
    names: dict[int, str] = {}
    identities: dict[int, str | None] = {}
    anonymized: set[int] = set()
    for partner, doc in rows:
        if docs is not None and partner.pk in docs:
            doc = docs[partner.pk]
        names[partner.pk] = partner.slug
        identities[partner.pk] = partner.identity_id
        pks[partner.slug] = partner.pk
        if doc is not None:
            by_slug[partner.slug] = doc
            if doc.write is not None and doc.write.anonymize_on_relay:
                anonymized.add(partner.pk)
    slug = names.get(partner_pk, f"partner {partner_pk}")
    return visibility.RelayScope(
        partner_pk=partner_pk,
        partner=slug,
        relayers=frozenset(pks[s] for s in relayers_for(slug, by_slug)),
        names=names,
        identities=identities,
        anonymized=frozenset(anonymized),
    )


def doc_grants(
    db: Session,
    doc: AgreementDoc,
    *,
    now: datetime,
    partner_active: bool = True,
    relay: visibility.RelayScope | None = None,
) -> dict[str, tuple[Collection, visibility.CollectionGrant]]:
    """alias -> (collection, grant) for every collection `doc` lets the partner read at `now`
    (originator control as the agreements stand, unless `relay` is given)."""
    aliases = doc.read.collections if doc.read else []
    if relay is None:
        partner = partner_service.get_by_slug(db, doc.partner)
        relay = relay_scope(db, partner.pk)
    found = {}
    for coll in db.scalars(select(Collection).where(Collection.alias.in_(aliases)).order_by(Collection.pk)):
        grant = read_grant(doc, collection=coll.alias, now=now, partner_active=partner_active)
        if grant is not None:
            found[coll.alias] = (coll, visibility.collection_grant(coll, grant, relay))
    return found


def may_delete(principal: Principal) -> bool:
    """Deleting stored evidence is for internal staff only."""
    return principal.is_internal
