"""What an agreement change reveals enters the partner's stream when the change is made.

A partner's pollers and push delivery resume after the last position they reached; stored
objects that an edit makes visible (a higher TLP ceiling, another type, a lower confidence
minimum, a shorter embargo, a reference now resolvable) lie before that position, so they are
released to that partner, in date_added order, from the moment of the change.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.database.types import utcnow
from exchange.intel import release
from exchange.intel.ingest import DATE_ADDED_STEP_US
from exchange.intel.models import ObjectVersion
from exchange.intel.timestamps import now_us
from exchange.sharing import visibility
from exchange.sharing.access import doc_grants, relay_scope
from policies.schemas import AgreementDoc

_CHUNK = 2000


def _as_in_force(doc: AgreementDoc) -> AgreementDoc:
    # What the partner could see under a version is what it grants while in force: a partner
    # whose agreement was suspended resumes from where it was, so compare read sections only.
    return doc.model_copy(update={"status": "active", "valid_from": date.min, "valid_until": date.max})


def release_revealed(
    db: Session, *, partner_pk: int, partner_active: bool, before: AgreementDoc | None, after: AgreementDoc
) -> int:
    """Release to the partner every latest version `after` lets it see now and `before` did not,
    and to every other partner what `after`'s relay_to now lets reach it; how many. A first
    agreement releases nothing to its own partner: the partner's stream starts with it."""
    total = _release_relayed(db, partner_pk=partner_pk, before=before, after=after)
    if before is None or not partner_active:
        return total
    now = utcnow()
    scope = relay_scope(db, partner_pk)
    new = doc_grants(db, after, now=now, relay=scope)
    old = doc_grants(db, _as_in_force(before), now=now, relay=scope)
    return total + _release(db, partner_pk=partner_pk, new=new, old=old)


def _release_relayed(
    db: Session, *, partner_pk: int, before: AgreementDoc | None, after: AgreementDoc
) -> int:
    """An originator's relay_to (or status) changed: every other partner that may now receive
    what the originator sent gets those stored objects released into its stream."""
    from exchange.agreement import service as agreement_service

    total = 0
    now = utcnow()
    current = agreement_service.current_docs(db)
    for partner, doc in current:
        if partner.pk == partner_pk or doc is None or partner.status != "active":
            continue
        old_scope = relay_scope(db, partner.pk, docs={partner_pk: before}, current=current)
        new_scope = relay_scope(db, partner.pk, docs={partner_pk: after}, current=current)
        if new_scope.relayers <= old_scope.relayers:
            continue  # nothing more reaches this partner (less is never released)
        new = doc_grants(db, doc, now=now, relay=new_scope)
        old = doc_grants(db, doc, now=now, relay=old_scope)
        total += _release(db, partner_pk=partner.pk, new=new, old=old)
    return total


def _release(db: Session, *, partner_pk: int, new: dict, old: dict) -> int:  # type: ignore[type-arg]
    if not new:
        return 0
    stamp = now_us()
    new_all = [cg for _, cg in new.values()]
    old_all = [cg for _, cg in old.values()]
    start = (stamp // DATE_ADDED_STEP_US + 1) * DATE_ADDED_STEP_US
    total = 0
    for alias, (coll, cg) in new.items():
        now_visible = visibility.read_predicates(cg, new_all, now_us=stamp)
        before_visible = (
            visibility.read_predicates(old[alias][1], old_all, now_us=stamp) if alias in old else None
        )
        revealed: list[int] = []
        after_us = None
        while True:
            # Keyset chunks, and the two grants asked separately: both closures in one
            # statement nest deeper than SQLite's parser allows.
            query = select(ObjectVersion.pk, ObjectVersion.date_added_us).where(
                ObjectVersion.collection_pk == coll.pk, ObjectVersion.is_latest.is_(True), *now_visible
            )
            if after_us is not None:
                query = query.where(ObjectVersion.date_added_us > after_us)
            chunk = db.execute(query.order_by(ObjectVersion.date_added_us).limit(_CHUNK)).all()
            if not chunk:
                break
            after_us = chunk[-1].date_added_us
            pks = [r.pk for r in chunk]
            seen: set[int] = set()
            if before_visible is not None:
                seen = set(
                    db.scalars(select(ObjectVersion.pk).where(ObjectVersion.pk.in_(pks), *before_visible))
                )
            revealed += [pk for pk in pks if pk not in seen]
        total += release.release_for_partner(
            db,
            collection_pk=coll.pk,
            partner_pk=partner_pk,
            version_pks=revealed,
            from_us=start,
            step_us=DATE_ADDED_STEP_US,
        )
    return total
