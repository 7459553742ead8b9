"""A read grant as SQL: what a partner may see is filtered in the query, not after it.

Every predicate here mirrors one rule of `policies.engine.decide`, which runs again on each
row served as a second, fail-closed gate.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Rule:
    """One read rule as SQL, with the reason a row it refuses is withheld for (previews count
    them): tlp, type, confidence, embargo, audience, references; the vocabulary is open."""

    reason: str
    predicate: ColumnElement[bool]
    # The rule nests subqueries deeply (the reference closure): a query that combines several
    # such rules asks each one on its own (SQLite's parser limits nesting, not length).
    deep: bool = False


def row_rules(cg: CollectionGrant, *, now_us: int, table: Versions = ObjectVersion) -> list[Rule]:
    """The per-row rules (TLP, type, confidence, embargo, audience) for one collection."""
    grant = cg.grant
    ceiling = min(grant.max_tlp_rank, RED - 1)
    rules = [Rule("tlp", func.coalesce(table.tlp_rank, literal(cg.default_tlp_rank)) <= ceiling)]
    if grant.types is not None:
        rules.append(Rule("type", table.type.in_(sorted(grant.types)) if grant.types else false()))
    if grant.min_confidence is not None:
        # NULL confidence compares as unknown, so it is withheld: fail closed.
        rules.append(Rule("confidence", table.confidence >= grant.min_confidence))
    if grant.embargo_us:
        rules.append(Rule("embargo", table.date_added_us <= now_us - grant.embargo_us))
    rules.append(Rule("audience", or_(table.audience.is_(None), table.audience.like(f"%,{grant.partner},%"))))
    return rules


def row_predicates(
    cg: CollectionGrant, *, now_us: int, table: Versions = ObjectVersion
) -> list[ColumnElement[bool]]:
    """The per-row rules (TLP, type, confidence, embargo, audience) for one collection."""
    return [rule.predicate for rule in row_rules(cg, now_us=now_us, table=table)]


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


def read_rules(
    cg: CollectionGrant,
    all_grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    own_writers: Sequence[str] = (),
) -> list[Rule]:
    """Every rule a partner's read of one collection must satisfy, each with its reason."""
    return [
        *row_rules(cg, now_us=now_us),
        Rule("references", closure_predicate(all_grants, now_us=now_us, own_writers=own_writers), deep=True),
    ]


def read_predicates(
    cg: CollectionGrant,
    all_grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    own_writers: Sequence[str] = (),
) -> list[ColumnElement[bool]]:
    """Everything a partner's read of one collection must satisfy."""
    return [rule.predicate for rule in read_rules(cg, all_grants, now_us=now_us, own_writers=own_writers)]
