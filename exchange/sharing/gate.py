"""The second, fail-closed gate: `policies.decide` re-checks every row SQL chose to serve."""

from __future__ import annotations

import dataclasses
import logging
import operator
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from exchange.intel import query
from exchange.intel.models import ObjectRef, ObjectVersion
from exchange.intel.query import AnyRow
from exchange.intel.strictjson import canonical_text
from exchange.sharing.access import CollectionAccess
from exchange.sharing.visibility import visible_anywhere, written_by
from policies.engine import Decision, ObjectFacts, decide, redact

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
    # Whether the version references anything at all: the closure below is looked up only for
    # versions that do (most objects, indicators for one, reference nothing but TLP markings).
    exists(select(ObjectRef.ref_id).where(ObjectRef.object_version_pk == ObjectVersion.pk)).label("has_refs"),
)


def _audience(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    return frozenset(part for part in text.split(",") if part)


def _refs_visible(db: Session, pks: list[int], access: CollectionAccess) -> dict[int, bool]:
    refs: dict[int, set[str]] = {}
    if not pks:
        return {}
    for pk, ref_id in db.execute(
        select(ObjectRef.object_version_pk, ObjectRef.ref_id).where(
            query.among(db, ObjectRef.object_version_pk, pks)
        )
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


# decide is pure: rows whose facts are equal (the stix_id aside, and the date_added aside when no
# embargo applies: the only two facts it reads for nothing else) get the same decision, so a
# page decides each distinct set once; a thousand indicators hold a few dozen. Building an
# ObjectFacts and deciding per row cost more than the page query's own per-row work.
_ROW_FACTS = ("pk", "stix_id", "type", "tlp_rank", "confidence", "date_added_us", "audience", "revoked")
_KNOWN_FACTS = {*_ROW_FACTS[1:], "default_tlp_rank", "refs_visible"}
if {f.name for f in dataclasses.fields(ObjectFacts)} != _KNOWN_FACTS:
    # A new fact must join the memo key in check() (or decide would see another row's value).
    raise RuntimeError("policies.engine.ObjectFacts changed: update exchange.sharing.gate.check")


def check(db: Session, rows: Sequence[AnyRow], access: CollectionAccess) -> list[AnyRow]:
    """The rows `decide` also allows; a disagreement withholds the row and is logged."""
    grant, own = access.read_grant, access.collection_grant
    if grant is None or own is None or not rows:
        return []
    closure = _refs_visible(db, [r.pk for r in rows if getattr(r, "has_refs", True)], access)
    by_time = bool(grant.embargo_us)
    picks: dict[Any, operator.itemgetter[Any]] = {}
    decided: dict[tuple[Any, ...], Decision] = {}
    allowed = []
    for row in rows:
        # Rows of one result share their metadata (`_fields` builds a new tuple on every call).
        shape = getattr(row, "_parent", None) or type(row)
        pick = picks.get(shape)
        if pick is None:
            fields = row._fields
            pick = picks[shape] = operator.itemgetter(*(fields.index(name) for name in _ROW_FACTS))
        pk, stix_id, kind, tlp_rank, confidence, date_added_us, audience, revoked = pick(row)
        refs_visible = closure.get(pk, True)
        key = (
            kind,
            tlp_rank,
            confidence,
            audience,
            revoked,
            refs_visible,
            date_added_us if by_time else None,
        )
        decision = decided.get(key)
        if decision is None:
            facts = ObjectFacts(
                stix_id=stix_id,
                type=kind,
                tlp_rank=tlp_rank,
                default_tlp_rank=own.default_tlp_rank,
                confidence=confidence,
                date_added_us=date_added_us,
                audience=_audience(audience),
                refs_visible=refs_visible,
                revoked=revoked,
            )
            decision = decided[key] = decide(grant, facts, now_us=access.now_us)
        if decision.allowed:
            allowed.append(row)
        else:
            log.error(
                "policy gate withheld %s from %s although SQL selected it: %s",
                stix_id,
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
