"""A read grant as SQL: what a partner may see is filtered in the query, not after it.

Every predicate here mirrors one rule of `policies.engine.decide`, which runs again on each
row served as a second, fail-closed gate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, not_, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.orm.util import AliasedClass

from exchange.database.lists import one_of
from exchange.database.texts import contains_text
from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from policies.engine import ReadGrant
from policies.tlp import rank

RED = rank("red")

# The version table itself, or an alias of it inside the reference closure.
Versions: TypeAlias = type[ObjectVersion] | AliasedClass[ObjectVersion]


@dataclass(frozen=True)
class RelayScope:
    """Originator control for one recipient partner: whose objects may reach it.

    `relayers` are the partners whose current agreement relays to the recipient
    (`policies.engine.relayers_for`), never the recipient itself; `names` maps partner pks to
    slugs and `identities` to STIX identities, for the gate; `anonymized` are the partners whose
    agreement asks `anonymize_on_relay`.
    """

    partner_pk: int
    partner: str
    relayers: frozenset[int] = frozenset()
    names: Mapping[int, str] = field(default_factory=dict)
    identities: Mapping[int, str | None] = field(default_factory=dict)
    anonymized: frozenset[int] = frozenset()

    @property
    def relayer_names(self) -> frozenset[str]:
        return frozenset(self.names.get(pk, f"partner {pk}") for pk in self.relayers)

    def name(self, pk: int | None) -> str | None:
        return None if pk is None else self.names.get(pk, f"partner {pk}")

    @property
    def hidden_parties(self) -> tuple[tuple[int, str], ...]:
        """(partner pk, STIX identity) of the partners (other than the recipient) whose agreement
        asks `anonymize_on_relay`. Their identity objects are never served to the recipient,
        whoever stored them (they name the originator the relay hides); a reference to one
        withholds nothing in an object that came from that partner, whose served copy names
        the exchange instead (exchange.sharing.gate), and withholds the referrer anywhere else."""
        return tuple(
            sorted(
                (pk, identity)
                for pk in self.anonymized
                if pk != self.partner_pk and (identity := self.identities.get(pk)) is not None
            )
        )

    @property
    def hidden_identities(self) -> tuple[str, ...]:
        return tuple(sorted({identity for _, identity in self.hidden_parties}))


@dataclass(frozen=True)
class CollectionGrant:
    """One collection a partner may read, with its grant and its originator control."""

    collection_pk: int
    default_tlp_rank: int
    grant: ReadGrant
    relay: RelayScope


def collection_grant(collection: Collection, grant: ReadGrant, relay: RelayScope) -> CollectionGrant:
    return CollectionGrant(collection.pk, rank(collection.default_tlp), grant, relay)


def relay_predicate(scope: RelayScope, *, table: Versions = ObjectVersion) -> ColumnElement[bool]:
    """Originator control (`policies.engine.decide_relay`) as SQL: nothing goes back to a partner
    it came from, and a partner's object reaches another only when every partner it came from
    (sender and originator) relays to it; a sighting of the recipient's own object flows back."""
    allowed = sorted(scope.relayers)

    def relayed(col: Any) -> ColumnElement[bool]:
        if not allowed:
            return cast(ColumnElement[bool], col.is_(None))
        return or_(col.is_(None), col.in_(allowed))

    def not_from_recipient(col: Any) -> ColumnElement[bool]:
        return or_(col.is_(None), col != scope.partner_pk)

    target = aliased(ObjectVersion)
    flows_back = and_(
        table.type == "sighting",
        table.sighting_of_ref.is_not(None),
        not_from_recipient(table.origin_partner_pk),
        not_from_recipient(table.originator_partner_pk),
        exists(
            select(target.pk).where(
                target.stix_id == table.sighting_of_ref, target.originator_partner_pk == scope.partner_pk
            )
        ),
    )
    return or_(and_(relayed(table.origin_partner_pk), relayed(table.originator_partner_pk)), flows_back)


def echo_predicate(scope: RelayScope, *, table: Versions = ObjectVersion) -> ColumnElement[bool]:
    """The row came from the recipient itself (sent it, or originated the object). NULL columns
    (not from a partner) compare false, never unknown, so the negation is safe in a WHERE."""
    return or_(
        and_(table.origin_partner_pk.is_not(None), table.origin_partner_pk == scope.partner_pk),
        and_(table.originator_partner_pk.is_not(None), table.originator_partner_pk == scope.partner_pk),
    )


@dataclass(frozen=True)
class Rule:
    """One read rule as SQL, with the reason a row it refuses is withheld for (previews count
    them): tlp, type, confidence, embargo, audience, references; the vocabulary is open."""

    reason: str
    predicate: ColumnElement[bool]
    # The rule nests subqueries deeply (the reference closure): a query that combines several
    # such rules asks each one on its own (SQLite's parser limits nesting, not length).
    deep: bool = False


def row_rules(
    cg: CollectionGrant, *, now_us: int, table: Versions = ObjectVersion, relay: bool = True
) -> list[Rule]:
    """The per-row rules (TLP, type, confidence, embargo, audience, and with `relay` originator
    control: "originator" for what came from the recipient itself, "relay" for what its
    originator does not relay to the recipient) for one collection."""
    grant = cg.grant
    ceiling = min(grant.max_tlp_rank, RED - 1)
    rules = [Rule("tlp", func.coalesce(table.tlp_rank, literal(cg.default_tlp_rank)) <= ceiling)]
    if grant.types is not None:
        rules.append(Rule("type", one_of(table.type, sorted(grant.types)) if grant.types else false()))
    if grant.min_confidence is not None:
        # NULL confidence compares as unknown, so it is withheld: fail closed.
        rules.append(Rule("confidence", table.confidence >= grant.min_confidence))
    if grant.embargo_us:
        rules.append(Rule("embargo", table.date_added_us <= now_us - grant.embargo_us))
    rules.append(
        Rule("audience", or_(table.audience.is_(None), contains_text(table.audience, f",{grant.partner},")))
    )
    if relay:
        echo = echo_predicate(cg.relay, table=table)
        rules.append(Rule("originator", not_(echo)))
        # What came from the recipient is the "originator" rule's to refuse, so a preview counts
        # it once. Its flow-back test is a subquery: asked on its own in previews, like the closure.
        relayed = or_(echo, relay_predicate(cg.relay, table=table))
        if cg.relay.hidden_identities:
            relayed = and_(relayed, table.stix_id.not_in(cg.relay.hidden_identities))
        rules.append(Rule("relay", relayed, deep=True))
    return rules


def row_predicates(
    cg: CollectionGrant, *, now_us: int, table: Versions = ObjectVersion, relay: bool = True
) -> list[ColumnElement[bool]]:
    """The per-row rules (TLP, type, confidence, embargo, audience, originator control) for one
    collection (`relay=False` leaves originator control out)."""
    return [rule.predicate for rule in row_rules(cg, now_us=now_us, table=table, relay=relay)]


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


def known_to(scope: RelayScope, *, table: Versions = ObjectVersion) -> ColumnElement[bool]:
    """The partner has `table`'s object because it brought it in: it originated it, or (an SCO,
    which has no originator) it sent it and no other party stored that id. Never served back
    (echo), such a row still lets the partner follow a reference to it; a copy of another
    party's object that the partner posted does not (posting a hidden id unlocks nothing)."""
    other = aliased(ObjectVersion)
    stored_by_others = exists(
        select(other.pk).where(
            other.stix_id == table.stix_id,
            or_(other.origin_partner_pk.is_(None), other.origin_partner_pk != scope.partner_pk),
        )
    )
    return or_(
        table.originator_partner_pk == scope.partner_pk,
        and_(table.origin_partner_pk == scope.partner_pk, not_(stored_by_others)),
    )


def closure_predicate(
    grants: Sequence[CollectionGrant],
    *,
    now_us: int,
    table: Versions = ObjectVersion,
    depth: int = CLOSURE_DEPTH,
) -> ColumnElement[bool]:
    """Every id the row references (any `*_ref`/`*_refs` property, extensions included, and
    non-TLP markings) is visible too, and so are the ids those reference, `depth` levels down.

    Visible means a version the partner may receive (every row rule, originator control
    included: a reference to an object that may not be relayed to it withholds the referrer)
    whose own references are visible in turn, or one it brought in itself (`known_to`). The
    partner already holds what it brought in, so that object's own references are not followed
    (naming it reveals nothing further; the gate checks one level the same way). What the
    partner merely re-posted never vouches for a reference. Chains longer than CLOSURE_DEPTH (a
    report of a relationship of a sighting of ...) are withheld rather than followed further:
    fail closed.
    """
    if not grants:
        return not_(exists(select(ObjectRef.ref_id).where(ObjectRef.object_version_pk == table.pk)))
    target = aliased(ObjectVersion)
    known = aliased(ObjectVersion)
    ref = aliased(ObjectRef)
    conditions = [target.stix_id == ref.ref_id, visible_anywhere(grants, now_us=now_us, table=target)]
    if depth > 1:
        conditions.append(closure_predicate(grants, now_us=now_us, table=target, depth=depth - 1))
    else:
        deeper = aliased(ObjectRef)
        conditions.append(not_(exists(select(deeper.ref_id).where(deeper.object_version_pk == target.pk))))
    # A reference to an anonymising partner's identity, in an object from that partner, is renamed
    # in what is served: it withholds nothing (the identity itself is never served:
    # RelayScope.hidden_parties). Anywhere else it is a reference like any other.
    renamed = [
        and_(
            ref.ref_id == identity,
            or_(table.origin_partner_pk == pk, table.originator_partner_pk == pk),
        )
        for pk, identity in grants[0].relay.hidden_parties
    ]
    hidden_ref = exists(
        select(ref.ref_id).where(
            ref.object_version_pk == table.pk,
            *([not_(or_(*renamed))] if renamed else []),
            not_(exists(select(target.pk).where(*conditions))),
            not_(
                exists(
                    select(known.pk).where(
                        known.stix_id == ref.ref_id, known_to(grants[0].relay, table=known)
                    )
                )
            ),
        )
    )
    return not_(hidden_ref)


def read_rules(cg: CollectionGrant, all_grants: Sequence[CollectionGrant], *, now_us: int) -> list[Rule]:
    """Every rule a partner's read of one collection must satisfy, each with its reason."""
    return [
        *row_rules(cg, now_us=now_us),
        Rule("references", closure_predicate(all_grants, now_us=now_us), deep=True),
    ]


def read_predicates(
    cg: CollectionGrant, all_grants: Sequence[CollectionGrant], *, now_us: int
) -> list[ColumnElement[bool]]:
    """Everything a partner's read of one collection must satisfy."""
    # Building the closure costs more than a page query (tens of milliseconds of SQLAlchemy
    # constructs); the same grants give the same predicates, so they are built once per process.
    # Only an embargo makes them depend on the moment (`now_us`): then they are built afresh.
    key = predicates_key(cg, all_grants)
    if key is None:
        return [rule.predicate for rule in read_rules(cg, all_grants, now_us=now_us)]
    cached = _PREDICATES.get(key)
    if cached is None:
        # now_us=0: no grant here has an embargo, the only rule that reads it.
        cached = tuple(rule.predicate for rule in read_rules(cg, all_grants, now_us=0))
        _PREDICATES[key] = cached
        while len(_PREDICATES) > _PREDICATES_KEPT:
            _PREDICATES.popitem(last=False)
    return list(cached)


def predicates_key(cg: CollectionGrant, all_grants: Sequence[CollectionGrant]) -> tuple[Any, ...] | None:
    """What `read_predicates` builds its SQL from, when that does not depend on the moment (no
    embargo): equal keys, equal predicates, so a statement built on them may be kept too."""
    if any(g.grant.embargo_us for g in (cg, *all_grants)):
        return None
    return (_sql_key(cg), tuple(_sql_key(g) for g in all_grants))


# Built read predicates by what the SQL is made of (`_sql_key`), oldest first.
_PREDICATES: OrderedDict[tuple[Any, ...], tuple[ColumnElement[bool], ...]] = OrderedDict()
_PREDICATES_KEPT = 512


def _sql_key(cg: CollectionGrant) -> tuple[Any, ...]:
    """Everything of a grant the read rules' SQL is built from: a rule that reads anything more
    must add it here, or two partners could share one partner's predicates. (The relay scope's
    names are the gate's; of its identities, only those it hides are in SQL.)"""
    return (
        cg.collection_pk,
        cg.default_tlp_rank,
        cg.grant,
        cg.relay.partner_pk,
        cg.relay.relayers,
        cg.relay.hidden_parties,
    )
