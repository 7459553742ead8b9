"""Who may see and write which collection: one layer, checked before storage.

Internal staff (admin, analyst) read and write every collection. A partner credential gets
exactly what its organisation's agreement grants right now, as SQL predicates for reads and a
write grant for POSTs; anything else is invisible (404), never merely forbidden.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
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
from exchange.sharing.models import PolicyToken
from policies.engine import ReadGrant, WriteGrant, read_grant, relayers_for, write_grant
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
    if "inputs" not in cache:
        cache["inputs"] = _inputs(db, principal.partner_pk, now)
    inputs: _Inputs | None = cache["inputs"]
    if inputs is None or inputs.doc is None:
        return None
    read = read_grant(inputs.doc, collection=collection.alias, now=now, partner_active=inputs.active)
    write = write_grant(inputs.doc, collection=collection.alias, now=now, partner_active=inputs.active)
    if read is None and write is None:
        return None
    if read is None:
        return CollectionAccess(can_read=False, can_write=True, write_grant=write)
    stamp = now_us()
    own = visibility.collection_grant(collection, read, inputs.relay)
    predicates = visibility.read_predicates(own, inputs.grants, now_us=stamp)
    return CollectionAccess(
        can_read=True,
        can_write=write is not None,
        predicates=predicates,
        read_grant=read,
        write_grant=write,
        collection_grant=own,
        all_grants=inputs.grants,
        now_us=stamp,
        relay=inputs.relay,
        sql_key=visibility.predicates_key(own, inputs.grants),
    )


@dataclass(frozen=True)
class _Inputs:
    """What one partner's access to any collection is worked out from, on one UTC day: its
    status, its current agreement, originator control and the collections it may read."""

    active: bool
    doc: AgreementDoc | None
    relay: visibility.RelayScope
    grants: tuple[visibility.CollectionGrant, ...]


# Inputs by (policy token, UTC day, partner pk). The token is renewed by the database itself, in
# the transaction that changes any of them (exchange.sharing.models), so an entry is used only
# while nothing it was read from has changed, in every process alike; one query reads it.
_INPUTS: OrderedDict[tuple[str, date, int], _Inputs | None] = OrderedDict()
_INPUTS_KEPT = 4096
_INPUTS_LOCK = threading.Lock()


def _inputs(db: Session, partner_pk: int, now: datetime) -> _Inputs | None:
    token = db.scalar(select(PolicyToken.token).where(PolicyToken.pk == 1))
    key = (token, now.date(), partner_pk) if token is not None else None
    if key is not None:
        with _INPUTS_LOCK:
            if key in _INPUTS:
                _INPUTS.move_to_end(key)
                return _INPUTS[key]
    found = _read_inputs(db, partner_pk, now)
    if key is not None:
        with _INPUTS_LOCK:
            _INPUTS[key] = found
            while len(_INPUTS) > _INPUTS_KEPT:
                _INPUTS.popitem(last=False)
    return found


def _read_inputs(db: Session, partner_pk: int, now: datetime) -> _Inputs | None:
    current = agreement_service.current_docs(db)
    mine = next(((p, d) for p, d in current if p.pk == partner_pk), None)
    if mine is None:
        return None
    partner, doc = mine
    relay = relay_scope(db, partner_pk, current=current)
    active = partner.status == "active"
    granted = doc_grants(db, doc, now=now, partner_active=active, relay=relay) if doc is not None else {}
    return _Inputs(active=active, doc=doc, relay=relay, grants=tuple(cg for _, cg in granted.values()))


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
