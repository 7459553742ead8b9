"""A read grant as SQL: what a partner may see is filtered in the query, not after it.

Every predicate here mirrors one rule of `policies.engine.decide`, which runs again on each
row served as a second, fail-closed gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, not_, or_, select
from sqlalchemy.orm import aliased

from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from policies.engine import ReadGrant
from policies.tlp import rank

RED = rank("red")


@dataclass(frozen=True)
class CollectionGrant:
    """One collection a partner may read, with its grant."""

    collection_pk: int
    default_tlp_rank: int
    grant: ReadGrant


def collection_grant(collection: Collection, grant: ReadGrant) -> CollectionGrant:
    return CollectionGrant(collection.pk, rank(collection.default_tlp), grant)


def row_predicates(cg: CollectionGrant, *, now_us: int, table=ObjectVersion) -> list[ColumnElement[bool]]:  # type: ignore[no-untyped-def]
    """The per-row rules (TLP, type, confidence, embargo, audience) for one collection."""
    grant = cg.grant
    ceiling = min(grant.max_tlp_rank, RED - 1)
    preds: list[ColumnElement[bool]] = [
        func.coalesce(table.tlp_rank, literal(cg.default_tlp_rank)) <= ceiling,
    ]
    if grant.types is not None:
        preds.append(table.type.in_(sorted(grant.types)) if grant.types else false())
    if grant.min_confidence is not None:
        # NULL confidence compares as unknown, so it is withheld: fail closed.
        preds.append(table.confidence >= grant.min_confidence)
    if grant.embargo_us:
        preds.append(table.date_added_us <= now_us - grant.embargo_us)
    preds.append(or_(table.audience.is_(None), table.audience.like(f"%,{grant.partner},%")))
    return preds


def visible_anywhere(
    grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    table=ObjectVersion,  # type: ignore[no-untyped-def]
) -> ColumnElement[bool]:
    """`table`'s row is visible to the partner in one of the collections it may read."""
    if not grants:
        return false()
    return or_(
        *(
            and_(table.collection_pk == cg.collection_pk, *row_predicates(cg, now_us=now_us, table=table))
            for cg in grants
        )
    )


CLOSURE_DEPTH = 3


def closure_predicate(
    grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    table=ObjectVersion,
    depth: int = CLOSURE_DEPTH,  # type: ignore[no-untyped-def]
) -> ColumnElement[bool]:
    """Every id the row references (relationship ends, report contents, non-TLP markings) is
    visible too, and so are the ids those reference, `depth` levels down.

    Chains longer than CLOSURE_DEPTH (a report of a relationship of a sighting of ...) are
    withheld rather than followed further: fail closed.
    """
    target = aliased(ObjectVersion)
    ref = aliased(ObjectRef)
    target_ok = [target.stix_id == ref.ref_id, visible_anywhere(grants, now_us=now_us, table=target)]
    if depth > 1:
        target_ok.append(closure_predicate(grants, now_us=now_us, table=target, depth=depth - 1))
    else:
        deeper = aliased(ObjectRef)
        target_ok.append(not_(exists(select(deeper.ref_id).where(deeper.object_version_pk == target.pk))))
    hidden_ref = exists(
        select(ref.ref_id).where(
            ref.object_version_pk == table.pk, not_(exists(select(target.pk).where(*target_ok)))
        )
    )
    return not_(hidden_ref)


def read_predicates(
    cg: CollectionGrant, all_grants: Sequence[CollectionGrant], *, now_us: int
) -> list[ColumnElement[bool]]:
    """Everything a partner's read of one collection must satisfy."""
    return [*row_predicates(cg, now_us=now_us), closure_predicate(all_grants, now_us=now_us)]
