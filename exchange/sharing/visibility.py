"""A read grant as SQL: what a partner may see is filtered in the query, not after it.

Every predicate here mirrors one rule of `policies.engine.decide`, which runs again on each
row served as a second, fail-closed gate.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, not_, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.orm.util import AliasedClass

from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from policies.engine import ReadGrant
from policies.tlp import rank

RED = rank("red")

# The version table itself, or an alias of it inside the reference closure.
Versions: TypeAlias = type[ObjectVersion] | AliasedClass[ObjectVersion]


@dataclass(frozen=True)
class CollectionGrant:
    """One collection a partner may read, with its grant."""

    collection_pk: int
    default_tlp_rank: int
    grant: ReadGrant


def collection_grant(collection: Collection, grant: ReadGrant) -> CollectionGrant:
    return CollectionGrant(collection.pk, rank(collection.default_tlp), grant)


def row_predicates(
    cg: CollectionGrant, *, now_us: int, table: Versions = ObjectVersion
) -> list[ColumnElement[bool]]:
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
    table: Versions = ObjectVersion,
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


def written_by(own_writers: Sequence[str], *, table: Versions = ObjectVersion) -> ColumnElement[bool]:
    """`table`'s row was stored by one of the partner's own credentials (never NULL)."""
    if not own_writers:
        return false()
    return and_(table.added_by.is_not(None), table.added_by.in_(sorted(own_writers)))


def closure_predicate(
    grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    table: Versions = ObjectVersion,
    depth: int = CLOSURE_DEPTH,
    own_writers: Sequence[str] = (),
) -> ColumnElement[bool]:
    """Every id the row references (any `*_ref`/`*_refs` property, extensions included, and
    non-TLP markings) is visible too, and so are the ids those reference, `depth` levels down.

    What the partner wrote itself never vouches for a reference: an id counts as visible through
    another party's visible version, or through the partner's own when no other party stored it
    at all (so posting a hidden object's id, or an object naming it, unlocks nothing).
    Chains longer than CLOSURE_DEPTH (a report of a relationship of a sighting of ...) are
    withheld rather than followed further: fail closed.
    """
    target = aliased(ObjectVersion)
    ref = aliased(ObjectRef)
    conditions = [target.stix_id == ref.ref_id, visible_anywhere(grants, now_us=now_us, table=target)]
    if own_writers:
        other = aliased(ObjectVersion)
        stored_by_others = exists(
            select(other.pk).where(
                other.stix_id == target.stix_id, not_(written_by(own_writers, table=other))
            )
        )
        conditions.append(or_(not_(written_by(own_writers, table=target)), not_(stored_by_others)))
    if depth > 1:
        conditions.append(
            closure_predicate(grants, now_us=now_us, table=target, depth=depth - 1, own_writers=own_writers)
        )
    else:
        deeper = aliased(ObjectRef)
        conditions.append(not_(exists(select(deeper.ref_id).where(deeper.object_version_pk == target.pk))))
    hidden_ref = exists(
        select(ref.ref_id).where(
            ref.object_version_pk == table.pk, not_(exists(select(target.pk).where(*conditions)))
        )
    )
    return not_(hidden_ref)


def read_predicates(
    cg: CollectionGrant,
    all_grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    own_writers: Sequence[str] = (),
) -> list[ColumnElement[bool]]:
    """Everything a partner's read of one collection must satisfy."""
    # Building the closure costs more than a page query (tens of milliseconds of SQLAlchemy
    # constructs); the same grants give the same predicates, so they are built once per process.
    # Only an embargo makes them depend on the moment (`now_us`): then they are built afresh.
    # Every argument is part of the key: a new argument must join it (and the builder below).
    key = (cg, tuple(all_grants), tuple(sorted(own_writers)))
    if any(g.grant.embargo_us for g in (cg, *all_grants)):
        return _build_read_predicates(*key, now_us=now_us)
    return list(_cached_read_predicates(*key))


def _build_read_predicates(
    cg: CollectionGrant,
    all_grants: tuple[CollectionGrant, ...],
    own_writers: tuple[str, ...],
    *,
    now_us: int,
) -> list[ColumnElement[bool]]:
    return [
        *row_predicates(cg, now_us=now_us),
        closure_predicate(all_grants, now_us=now_us, own_writers=own_writers),
    ]


@functools.lru_cache(maxsize=512)
def _cached_read_predicates(
    cg: CollectionGrant, all_grants: tuple[CollectionGrant, ...], own_writers: tuple[str, ...]
) -> tuple[ColumnElement[bool], ...]:
    # now_us=0: no grant here has an embargo, the only rule that reads it.
    return tuple(_build_read_predicates(cg, all_grants, own_writers, now_us=0))
