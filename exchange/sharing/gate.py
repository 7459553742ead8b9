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
from exchange.sharing.visibility import RelayScope, known_to, visible_anywhere
from policies.engine import ObjectFacts, Provenance, anonymize_relayed, decide, redact

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
    ObjectVersion.origin_partner_pk,
    ObjectVersion.originator_partner_pk,
    ObjectVersion.sighting_of_ref,
    # Whether the version references anything at all: the closure below is looked up only for
    # versions that do (most objects, indicators for one, reference nothing but TLP markings).
    exists(select(ObjectRef.ref_id).where(ObjectRef.object_version_pk == ObjectVersion.pk)).label("has_refs"),
)


def _audience(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    return frozenset(part for part in text.split(",") if part)


def _refs_visible(
    db: Session, pks: list[int], access: CollectionAccess, renamed: dict[int, set[str]]
) -> dict[int, bool]:
    """Whether every reference of each version in `pks` is visible to the partner, or is one of
    `renamed[pk]` (an anonymising source's identity, renamed in what is served)."""
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
    vouched: set[str] = set()
    if access.relay is not None and access.all_grants:
        # Visible to the partner (originator control included), or brought in by it (see visibility).
        for stix_id, visible, known in db.execute(
            select(
                ObjectVersion.stix_id,
                visible_anywhere(access.all_grants, now_us=access.now_us),
                known_to(access.relay),
            ).where(ObjectVersion.stix_id.in_(wanted))
        ):
            if visible or known:
                vouched.add(stix_id)
    return {pk: ids - renamed.get(pk, set()) <= vouched for pk, ids in refs.items()}


def _flowing_back(db: Session, targets: list[str], scope: RelayScope) -> set[str]:
    """Of the ids sightings sight (`targets`), those the recipient originated."""
    if not targets:
        return set()
    return set(
        db.scalars(
            select(ObjectVersion.stix_id).where(
                ObjectVersion.stix_id.in_(targets), ObjectVersion.originator_partner_pk == scope.partner_pk
            )
        )
    )


def provenance(row: AnyRow, scope: RelayScope, flowing_back: set[str]) -> Provenance | None:
    """The row's provenance as `policies.engine.decide_relay` reads it (None: the CERT's or a feed's)."""
    if row.origin_partner_pk is None and row.originator_partner_pk is None and row.type != "sighting":
        return None
    sighted = scope.partner if row.type == "sighting" and row.sighting_of_ref in flowing_back else None
    return Provenance(
        source=scope.name(row.origin_partner_pk),
        originator=scope.name(row.originator_partner_pk),
        sighted_originator=sighted,
    )


# What a memo entry of `check` is keyed by: every ObjectFacts field `decide` reads, each as the
# row holds it (`date_added_us` reduced to whether an embargo still covers it). `stix_id` is the
# only fact left out: `decide` never reads it. A new ObjectFacts field must be added here, or
# rows differing only in it would share one decision; this fails at import until it is.
_MEMO_FACTS = frozenset(
    {
        "type",
        "tlp_rank",
        "default_tlp_rank",
        "confidence",
        "date_added_us",
        "audience",
        "refs_visible",
        "revoked",
        "provenance",
    }
)
if {f.name for f in dataclasses.fields(ObjectFacts)} != _MEMO_FACTS | {"stix_id"}:
    raise ImportError("policies.engine.ObjectFacts changed: update exchange.sharing.gate's memo key")

# The columns `check` reads, by name; `_reader` finds them in whichever layout a page has.
_READ = (
    "pk",
    "stix_id",
    "type",
    "tlp_rank",
    "confidence",
    "date_added_us",
    "audience",
    "revoked",
    "origin_partner_pk",
    "originator_partner_pk",
    "sighting_of_ref",
)


def _reader(row: AnyRow, names: Sequence[str] = _READ) -> operator.itemgetter[Any]:
    """The values of `names`, by position, from rows laid out as `row` is."""
    fields = list(row._fields)
    return operator.itemgetter(*(fields.index(name) for name in names))


def _position(row: AnyRow, name: str) -> int | None:
    fields = list(row._fields)
    return fields.index(name) if name in fields else None


def check(db: Session, rows: Sequence[AnyRow], access: CollectionAccess) -> list[AnyRow]:
    """The rows `decide` also allows; a disagreement withholds the row and is logged.

    `decide` is pure: rows with the same facts (see `_MEMO_FACTS`) get the same decision, so a
    page asks it once per distinct set of facts, not once per row. A row it refuses is decided
    again on its own facts, so the log names the row's own reason.
    """
    grant, own = access.read_grant, access.collection_grant
    if grant is None or own is None or not rows:
        return []
    scope = access.relay
    if scope is None:  # a partner's access always carries its originator control: fail closed
        return []
    read = _reader(rows[0])
    values = [read(row) for row in rows]
    # The closure is looked up only for versions that reference anything (a layout without
    # has_refs: every version), flowing back only for sightings.
    refs_at = _position(rows[0], "has_refs")
    referring = [v[0] for v, row in zip(values, rows, strict=True) if refs_at is None or row[refs_at]]
    hidden_parties = dict(scope.hidden_parties)
    # By the row's source and originator (value[8], value[9]); asked only when some partner
    # relays anonymously, not a thousand times a page for nothing.
    renamed = (
        {v[0]: {hidden_parties[p] for p in (v[8], v[9]) if p in hidden_parties} for v in values}
        if hidden_parties
        else {}
    )
    closure = _refs_visible(db, referring, access, renamed)
    back = _flowing_back(db, sorted({v[10] for v in values if v[2] == "sighting" and v[10]}), scope)
    relayers = scope.relayer_names
    hidden_identities = scope.hidden_identities
    now, embargo = access.now_us, grant.embargo_us
    memo: dict[tuple[Any, ...], bool] = {}
    allowed = []
    for row, value in zip(rows, values, strict=True):
        pk, stix_id, kind, tlp, confidence, added, audience, revoked, source, originator, sighted = value
        if hidden_identities and stix_id in hidden_identities:
            log.error(
                "policy gate withheld %s from %s although SQL selected it: the identity of a "
                "partner that relays anonymously",
                stix_id,
                grant.partner,
            )
            continue
        refs_visible = closure.get(pk, True)
        flows_back = kind == "sighting" and sighted in back
        key = (
            kind,
            tlp,
            confidence,
            bool(embargo) and added + embargo > now,
            audience,
            refs_visible,
            bool(revoked),
            source,
            originator,
            kind == "sighting",
            flows_back,
        )
        verdict = memo.get(key)
        if verdict is None:
            facts = _facts(row, read, own.default_tlp_rank, refs_visible, scope, back)
            verdict = memo[key] = decide(grant, facts, now_us=now, relayers=relayers).allowed
        if verdict:
            allowed.append(row)
        else:
            facts = _facts(row, read, own.default_tlp_rank, refs_visible, scope, back)
            log.error(
                "policy gate withheld %s from %s although SQL selected it: %s",
                stix_id,
                grant.partner,
                decide(grant, facts, now_us=now, relayers=relayers).reason,
            )
    return allowed


def _facts(
    row: AnyRow,
    read: operator.itemgetter[Any],
    default_tlp_rank: int,
    refs_visible: bool,
    scope: RelayScope,
    back: set[str],
) -> ObjectFacts:
    _, stix_id, kind, tlp, confidence, added, audience, revoked, *_ = read(row)
    return ObjectFacts(
        stix_id=stix_id,
        type=kind,
        tlp_rank=tlp,
        default_tlp_rank=default_tlp_rank,
        confidence=confidence,
        date_added_us=added,
        audience=_audience(audience),
        refs_visible=refs_visible,
        revoked=bool(revoked),
        provenance=provenance(row, scope, back),
    )


def body_texts(rows: Sequence[AnyRow], access: CollectionAccess, *, exchange_identity: str) -> list[str]:
    """`body_text` of each row; without redaction or anonymisation in the grant, only rows that
    came from a partner can change (their source may have to be hidden), so the others go
    straight through as stored."""
    grant = access.read_grant
    if grant is None or not rows:
        return [r.body for r in rows]
    if grant.redact or grant.anonymize_source:
        return [body_text(r, access, exchange_identity=exchange_identity) for r in rows]
    fields = list(rows[0]._fields)
    body, source, originator = (
        fields.index(n) for n in ("body", "origin_partner_pk", "originator_partner_pk")
    )
    return [
        r[body]
        if r[source] is None and r[originator] is None
        else body_text(r, access, exchange_identity=exchange_identity)
        for r in rows
    ]


def body_text(row: AnyRow, access: CollectionAccess, *, exchange_identity: str) -> str:
    """The object's canonical text as this partner may receive it: the stored text unless a
    redaction applies (only then is it parsed and re-serialised)."""
    grant = access.read_grant
    stored: str = row.body
    if grant is None:
        return stored
    hidden = _anonymized_source(row, access)
    if not (grant.redact or grant.anonymize_source or hidden):
        return stored
    obj = orjson.loads(row.body)
    changed = None
    for pk in hidden:
        assert access.relay is not None
        changed = (
            anonymize_relayed(
                changed or obj, access.relay.identities.get(pk), exchange_identity=exchange_identity
            )
            or changed
        )
    redacted = redact(changed or obj, grant, exchange_identity=exchange_identity)
    changed = redacted or changed
    return stored if changed is None else canonical_text(changed)


def _anonymized_source(row: AnyRow, access: CollectionAccess) -> list[int]:
    """The partners this relayed row came from whose name must not travel with it: those whose
    agreement asks `anonymize_on_relay`, and a sighter whose sighting reaches the recipient only
    because it flows back (it never agreed to be named to that partner)."""
    scope = access.relay
    source, originator = row.origin_partner_pk, row.originator_partner_pk
    if scope is None or (source is None and originator is None):
        return []
    parties = {p for p in (source, originator) if p is not None}
    return sorted(p for p in parties if p in scope.anonymized or p not in scope.relayers)
