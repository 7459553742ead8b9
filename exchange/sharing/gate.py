"""The second, fail-closed gate: `policies.decide` re-checks every row SQL chose to serve."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.intel.models import ObjectRef, ObjectVersion
from exchange.intel.query import AnyRow
from exchange.intel.strictjson import canonical_text
from exchange.sharing.access import CollectionAccess
from exchange.sharing.visibility import visible_anywhere, written_by
from policies.engine import ObjectFacts, decide, redact

log = logging.getLogger(__name__)

GATE_COLUMNS = (
    ObjectVersion.pk,
    ObjectVersion.stix_id,
    ObjectVersion.type,
    ObjectVersion.tlp_rank,
    ObjectVersion.confidence,
    ObjectVersion.date_added_us,
    ObjectVersion.audience,
    ObjectVersion.revoked,
    ObjectVersion.version_text,
    ObjectVersion.collection_pk,
)


def _audience(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    return frozenset(part for part in text.split(",") if part)


def _refs_visible(db: Session, pks: list[int], access: CollectionAccess) -> dict[int, bool]:
    refs: dict[int, set[str]] = {}
    for pk, ref_id in db.execute(
        select(ObjectRef.object_version_pk, ObjectRef.ref_id).where(ObjectRef.object_version_pk.in_(pks))
    ):
        refs.setdefault(pk, set()).add(ref_id)
    if not refs:
        return {}
    wanted = sorted(set().union(*refs.values()))
    own = written_by(access.own_writers)
    visible_by_others: set[str] = set()
    visible_own: set[str] = set()
    stored_by_others: set[str] = set()
    for stix_id, mine, visible in db.execute(
        select(
            ObjectVersion.stix_id,
            own,
            visible_anywhere(access.all_grants, now_us=access.now_us),
        ).where(ObjectVersion.stix_id.in_(wanted))
    ):
        if not mine:
            stored_by_others.add(stix_id)
            if visible:
                visible_by_others.add(stix_id)
        elif visible:
            visible_own.add(stix_id)
    # The partner's own writes vouch for an id only when no other party stored it (see visibility).
    vouched = visible_by_others | (visible_own - stored_by_others)
    return {pk: ids <= vouched for pk, ids in refs.items()}


def check(db: Session, rows: Sequence[AnyRow], access: CollectionAccess) -> list[AnyRow]:
    """The rows `decide` also allows; a disagreement withholds the row and is logged."""
    grant, own = access.read_grant, access.collection_grant
    if grant is None or own is None:
        return []
    closure = _refs_visible(db, [r.pk for r in rows], access)
    allowed = []
    for row in rows:
        facts = ObjectFacts(
            stix_id=row.stix_id,
            type=row.type,
            tlp_rank=row.tlp_rank,
            default_tlp_rank=own.default_tlp_rank,
            confidence=row.confidence,
            date_added_us=row.date_added_us,
            audience=_audience(row.audience),
            refs_visible=closure.get(row.pk, True),
            revoked=row.revoked,
        )
        decision = decide(grant, facts, now_us=access.now_us)
        if decision.allowed:
            allowed.append(row)
        else:
            log.error(
                "policy gate withheld %s from %s although SQL selected it: %s",
                row.stix_id,
                grant.partner,
                decision.reason,
            )
    return allowed


def body_text(row: AnyRow, access: CollectionAccess, *, exchange_identity: str) -> str:
    """The object's canonical text as this partner may receive it: the stored text unless a
    redaction applies (only then is it parsed and re-serialised)."""
    grant = access.read_grant
    stored: str = row.body
    if grant is None or not (grant.redact or grant.anonymize_source):
        return stored
    changed = redact(orjson.loads(row.body), grant, exchange_identity=exchange_identity)
    return stored if changed is None else canonical_text(changed)
