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
from policies.engine import ReadGrant, WriteGrant, read_grant
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
    # The partner's own credential ids: what they stored never vouches for a reference.
    own_writers: tuple[str, ...] = ()


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
    if "grants" not in cache:
        cache["grants"] = _all_read_grants(db, principal, doc, now)
    if "writers" not in cache:
        cache["writers"] = own_writers(db, principal.partner_pk)
    own = visibility.collection_grant(collection, read)
    predicates = visibility.read_predicates(own, cache["grants"], now_us=stamp, own_writers=cache["writers"])
    return CollectionAccess(
        can_read=True,
        can_write=write is not None,
        predicates=predicates,
        read_grant=read,
        write_grant=write,
        collection_grant=own,
        all_grants=cache["grants"],
        now_us=stamp,
        own_writers=cache["writers"],
    )


def _all_read_grants(db: Session, principal: Caller, doc, now) -> list[visibility.CollectionGrant]:  # type: ignore[no-untyped-def]
    if doc is None or doc.read is None:
        return []
    grants = []
    for coll in db.scalars(select(Collection).where(Collection.alias.in_(doc.read.collections))):
        read, _ = agreement_service.grants_for(db, principal, coll, now=now, doc=doc)
        if read is not None:
            grants.append(visibility.collection_grant(coll, read))
    return grants


def doc_grants(
    db: Session, doc: AgreementDoc, *, now: datetime, partner_active: bool = True
) -> dict[str, tuple[Collection, visibility.CollectionGrant]]:
    """alias -> (collection, grant) for every collection `doc` lets the partner read at `now`."""
    aliases = doc.read.collections if doc.read else []
    found = {}
    for coll in db.scalars(select(Collection).where(Collection.alias.in_(aliases)).order_by(Collection.pk)):
        grant = read_grant(doc, collection=coll.alias, now=now, partner_active=partner_active)
        if grant is not None:
            found[coll.alias] = (coll, visibility.collection_grant(coll, grant))
    return found


def own_writers(db: Session, partner_pk: int | None) -> tuple[str, ...]:
    """Every credential id the partner ever held (revoked ones too: what they stored stays theirs)."""
    return () if partner_pk is None else partner_service.credential_ids(db, partner_pk)


def may_delete(principal: Principal) -> bool:
    """Deleting stored evidence is for internal staff only."""
    return principal.is_internal
