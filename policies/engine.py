"""Grants from agreements, and the per-object decision: may this partner see this object, and how.

Fail closed: no grant, an unknown level, a missing confidence under a minimum, an object in
its embargo or outside its audience, or a reference the partner cannot follow, all withhold.
Pure module: standard library and policies.* only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from policies.schemas import PROTECTED_PROPERTIES, AgreementDoc
from policies.tlp import LEVELS, rank

RED = rank("red")
HIGHEST_SHAREABLE = RED - 1  # amber+strict: red never leaves the exchange
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ReadGrant:
    """What one partner may read from one collection right now."""

    partner: str
    collection: str
    max_tlp_rank: int
    types: frozenset[str] | None
    min_confidence: int | None
    embargo_us: int
    redact: tuple[str, ...]
    anonymize_source: bool

    def __post_init__(self) -> None:
        if not 0 <= self.max_tlp_rank <= HIGHEST_SHAREABLE:
            raise ValueError(
                f"max_tlp_rank {self.max_tlp_rank} outside 0..{HIGHEST_SHAREABLE}: red never leaves"
            )
        if self.embargo_us < 0:
            raise ValueError(f"embargo_us {self.embargo_us} is negative")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence {self.min_confidence} outside 0..100")
        protected = [path for path in self.redact if path.split(".")[0] in PROTECTED_PROPERTIES]
        if protected:
            raise ValueError(f"may not redact {', '.join(protected)}")


@dataclass(frozen=True)
class WriteGrant:
    """What one partner may post into one collection right now."""

    partner: str
    collection: str
    types: frozenset[str] | None
    require_signature: bool


@dataclass(frozen=True)
class ObjectFacts:
    """What `decide` needs to know about one stored object version."""

    stix_id: str
    type: str
    tlp_rank: int | None  # None: unmarked
    default_tlp_rank: int  # the collection's level for unmarked objects
    confidence: int | None
    date_added_us: int
    audience: frozenset[str] | None  # None: every partner; else partner slugs
    refs_visible: bool = True  # referential closure, computed by the caller
    revoked: bool = False
    provenance: Provenance | None = None  # None: the CERT's or a feed's own object


@dataclass(frozen=True)
class Provenance:
    """Which partners an object version came from, as originator control needs to know them.

    `source` sent this version (a partner posting it, or a peer it was pulled from); `originator`
    first brought the object into the exchange and keeps control of every later version and copy
    of it, whoever stores those (an analyst's new version, a copy in another collection, another
    partner re-posting it). For a sighting, `sighted_originator` is the originator of the object
    it is a sighting of: the sighting flows back to that partner.
    """

    source: str | None = None
    originator: str | None = None
    sighted_originator: str | None = None


def relays(relay_to: str | Sequence[str], recipient: str) -> bool:
    """Whether an agreement's `write.relay_to` lets what its partner sends reach `recipient`."""
    if relay_to == "all":
        return True
    if isinstance(relay_to, str):
        return False  # "none", or anything unknown: fail closed
    return recipient in relay_to


def relayers_for(recipient: str, docs: Mapping[str, AgreementDoc]) -> frozenset[str]:
    """The partners (slug -> current agreement) whose objects may reach `recipient`: those whose
    agreement is active and relays to it. Never the recipient itself."""
    return frozenset(
        slug
        for slug, doc in docs.items()
        if slug != recipient
        and doc.status == "active"
        and doc.write is not None
        and relays(doc.write.relay_to, recipient)
    )


def decide_relay(provenance: Provenance | None, recipient: str, relayers: frozenset[str]) -> Decision:
    """Originator control: may a version with this provenance reach `recipient`?

    Nothing goes back to a partner it came from ("originator"). Otherwise every partner it came
    from (sender and originator) must relay to the recipient ("relay"), except that a sighting of
    an object the recipient originated always flows back to it: the originator learns where its
    object was seen.
    """
    if provenance is None:
        return ALLOWED
    parties = {p for p in (provenance.source, provenance.originator) if p is not None}
    if recipient in parties:
        return Decision(False, f"originator: {recipient} sent this object; nothing goes back to its sender")
    if provenance.sighted_originator is not None and provenance.sighted_originator == recipient:
        return ALLOWED
    if parties - relayers:
        return Decision(False, f"relay: the originator's agreement does not relay it to {recipient}")
    return ALLOWED


@dataclass(frozen=True)
class Decision:
    """Whether an object version may go to the partner, and the first rule that refused it."""

    allowed: bool
    reason: str


ALLOWED = Decision(True, "allowed")


def in_force(doc: AgreementDoc, partner_status: str, today: date) -> bool:
    """Whether the agreement grants anything on the UTC date `today`: it is active, its partner is
    active, and `today` is inside its window (both ends included). Anything else grants nothing."""
    if isinstance(today, datetime) or not isinstance(today, date):
        raise TypeError("today must be a date (the UTC calendar day), not a datetime")
    return (
        doc.status == "active" and partner_status == "active" and doc.valid_from <= today <= doc.valid_until
    )


def _today(now: datetime) -> date:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware; agreement windows are UTC dates")
    return now.astimezone(UTC).date()


def _status(partner_active: bool) -> str:
    # Only a real True counts: a truthy stand-in ("no", 1) must not switch grants on.
    return "active" if partner_active is True else "inactive"


def _microseconds(td: timedelta | None) -> int:
    if td is None:
        return 0
    return (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds


def read_grant(
    doc: AgreementDoc, *, collection: str, now: datetime, partner_active: bool = True
) -> ReadGrant | None:
    """The partner's read grant for `collection` at `now`, or None (fail closed)."""
    read = doc.read
    if read is None or collection not in read.collections:
        return None
    if not in_force(doc, _status(partner_active), _today(now)):
        return None
    return ReadGrant(
        partner=doc.partner,
        collection=collection,
        max_tlp_rank=min(rank(read.max_tlp), HIGHEST_SHAREABLE),
        types=None if read.types is None else frozenset(read.types),
        min_confidence=read.min_confidence,
        embargo_us=_microseconds(read.embargo),
        redact=tuple(read.redact),
        anonymize_source=read.anonymize_source,
    )


def write_grant(
    doc: AgreementDoc, *, collection: str, now: datetime, partner_active: bool = True
) -> WriteGrant | None:
    """The partner's write grant for `collection` at `now`, or None (fail closed)."""
    write = doc.write
    if write is None or collection not in write.collections:
        return None
    if not in_force(doc, _status(partner_active), _today(now)):
        return None
    return WriteGrant(
        partner=doc.partner,
        collection=collection,
        types=None if write.types is None else frozenset(write.types),
        require_signature=write.require_signature,
    )


@dataclass(frozen=True)
class PushGrant:
    """Push delivery in force for one partner: where to, how often, and from which collections."""

    partner: str
    url: str
    every_seconds: int
    collections: tuple[str, ...]  # the one the push section names, else every collection read


def push_grant(doc: AgreementDoc | None, *, partner_status: str, today: date) -> PushGrant | None:
    """The push delivery the agreement asks for on `today`, or None (no agreement, no push
    section, or not in force: fail closed)."""
    if doc is None or doc.push is None or doc.read is None:
        return None
    if not in_force(doc, partner_status, today):
        return None
    push = doc.push
    collections = (push.collection,) if push.collection else tuple(doc.read.collections)
    return PushGrant(
        partner=doc.partner,
        url=push.url,
        every_seconds=int(push.every.total_seconds()),
        collections=collections,
    )


def decide_write(grant: WriteGrant | None, obj: Any, signature_problem: str | None) -> Decision:
    """May the grant's partner write this object? `signature_problem` is why the envelope's
    signature failed (None when it verified or none is needed); the first rule that refuses says why."""
    if grant is None:
        return Decision(False, "no write grant")
    if grant.require_signature and signature_problem is not None:
        return Decision(False, f"the agreement requires signed submissions: {signature_problem}")
    kind = obj.get("type") if isinstance(obj, dict) else None
    if not isinstance(kind, str):
        kind = None  # a list or mapping here would not even hash; no such object is any type
    if grant.types is not None and kind not in grant.types:
        return Decision(
            False, f"the agreement does not let {grant.partner} write objects of type {kind!r} here"
        )
    return ALLOWED


def _level_name(level: int) -> str:
    return LEVELS[level] if 0 <= level < len(LEVELS) else str(level)


def _timestamp(us: int) -> str:
    try:
        # isoformat, not strftime("%Y"), which writes year 1 as "1" on Linux
        moment = (_EPOCH + timedelta(microseconds=us)).replace(tzinfo=None)
        return moment.isoformat(timespec="microseconds") + "Z"
    except OverflowError:
        return f"{us} us after the epoch"


def decide(
    grant: ReadGrant | None, facts: ObjectFacts, *, now_us: int, relayers: frozenset[str] = frozenset()
) -> Decision:
    """May the grant's partner see this object version now? The first rule that refuses says why.

    Revoked objects are not withheld for being revoked (partners must learn of revocations);
    every other rule still applies to them. `relayers` are the partners whose objects may reach
    this one (`relayers_for`).
    """
    if grant is None:
        return Decision(False, "no read grant")
    level = facts.tlp_rank if facts.tlp_rank is not None else facts.default_tlp_rank
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= RED:
        return Decision(False, f"unknown tlp rank {level!r}")
    if level >= RED:
        return Decision(False, "tlp red never leaves the exchange")
    ceiling = min(grant.max_tlp_rank, HIGHEST_SHAREABLE)
    if level > ceiling:
        return Decision(False, f"tlp {_level_name(level)} above ceiling {_level_name(ceiling)}")
    if grant.types is not None and facts.type not in grant.types:
        return Decision(False, f"type {facts.type!r} not granted")
    if grant.min_confidence is not None:
        if facts.confidence is None:
            return Decision(False, f"no confidence and a minimum of {grant.min_confidence} applies")
        if facts.confidence < grant.min_confidence:
            return Decision(False, f"confidence {facts.confidence} below minimum {grant.min_confidence}")
    # No embargo means none, as in the SQL filter (exchange.sharing.visibility).
    if grant.embargo_us and facts.date_added_us + grant.embargo_us > now_us:
        return Decision(False, f"under embargo until {_timestamp(facts.date_added_us + grant.embargo_us)}")
    if facts.audience is not None and grant.partner not in facts.audience:
        return Decision(False, f"audience excludes {grant.partner}")
    relay = decide_relay(facts.provenance, grant.partner, relayers)
    if not relay.allowed:
        return relay
    if not facts.refs_visible:
        return Decision(False, "references an object the partner cannot see")
    return ALLOWED


def _remove(node: Any, steps: list[str]) -> bool:
    """Remove the dotted path below `node`, through dicts and into every element of lists."""
    if isinstance(node, list):
        changed = False
        for item in node:
            changed = _remove(item, steps) or changed
        return changed
    if not isinstance(node, dict) or steps[0] not in node:
        return False
    if len(steps) == 1:
        del node[steps[0]]
        return True
    return _remove(node[steps[0]], steps[1:])


def redact(
    obj: dict[str, Any], grant: ReadGrant, *, exchange_identity: str | None = None
) -> dict[str, Any] | None:
    """The object as the partner may receive it, or None when it goes out unchanged.

    Never mutates `obj`. With `anonymize_source`, a third party's `created_by_ref` becomes the
    exchange's identity; without an exchange identity to put there it is removed instead, so a
    source is never revealed for want of a replacement.
    """
    if not grant.redact and not grant.anonymize_source:
        return None
    out = copy.deepcopy(obj)
    changed = False
    for path in grant.redact:
        steps = path.split(".")
        if steps[0] in PROTECTED_PROPERTIES:
            continue
        changed = _remove(out, steps) or changed
    if grant.anonymize_source and "created_by_ref" in out:
        source = out["created_by_ref"]
        if exchange_identity is None:
            del out["created_by_ref"]
            changed = True
        elif source != exchange_identity:
            out["created_by_ref"] = exchange_identity
            changed = True
        # The source must not be named elsewhere either (a sighting's where_sighted_refs, ...).
        if isinstance(source, str) and source != exchange_identity:
            changed = _rename_refs(out, source, exchange_identity, 0) or changed
    return out if changed else None


def anonymize_relayed(
    obj: dict[str, Any], source_identity: str | None, *, exchange_identity: str | None
) -> dict[str, Any] | None:
    """A relayed object as the originator's `anonymize_on_relay` wants it: its creator (the
    originator's identity, `source_identity`) replaced by the exchange's, in `created_by_ref` and
    every other reference; None when nothing changes. Never mutates `obj`."""
    creator = obj.get("created_by_ref")
    names = {n for n in (creator, source_identity) if isinstance(n, str) and n != exchange_identity}
    if not names:
        return None
    out = copy.deepcopy(obj)
    changed = False
    if isinstance(creator, str) and creator in names:
        if exchange_identity is None:
            del out["created_by_ref"]
        else:
            out["created_by_ref"] = exchange_identity
        changed = True
    for name in sorted(names):
        changed = _rename_refs(out, name, exchange_identity, 0) or changed
    return out if changed else None


def _rename_refs(node: Any, old: str, new: str | None, depth: int) -> bool:
    """Replace the id `old` in every `*_ref`/`*_refs` value below `node` (drop it when `new` is None)."""
    if depth > _MAX_DEPTH:
        return False
    changed = False
    if isinstance(node, list):
        for item in node:
            changed = _rename_refs(item, old, new, depth + 1) or changed
        return changed
    if not isinstance(node, dict):
        return False
    for name in list(node):
        value = node[name]
        if isinstance(name, str) and _is_reference(name):
            if value == old:
                if new is None:
                    del node[name]
                else:
                    node[name] = new
                changed = True
            elif isinstance(value, list) and old in value:
                node[name] = [
                    new if item == old else item for item in value if new is not None or item != old
                ]
                changed = True
        elif isinstance(value, (dict, list)):
            changed = _rename_refs(value, old, new, depth + 1) or changed
    return changed


# The creator is not closure: whether a partner learns it is `anonymize_source`'s decision.
_NOT_CLOSURE = frozenset({"created_by_ref"})
_MAX_DEPTH = 64


def _is_reference(name: str) -> bool:
    return name.endswith(("_ref", "_refs"))


def _collect(node: Any, found: set[str], depth: int, *, top: bool) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, list):
        for item in node:
            _collect(item, found, depth + 1, top=False)
        return
    if not isinstance(node, dict):
        return
    for name, value in node.items():
        if not isinstance(name, str):
            continue
        if _is_reference(name) and not (top and name in _NOT_CLOSURE):
            if isinstance(value, str):
                found.add(value)
            elif isinstance(value, list):
                found.update(item for item in value if isinstance(item, str))
        elif isinstance(value, (dict, list)):
            _collect(value, found, depth + 1, top=False)


def references(obj: dict[str, Any]) -> set[str]:
    """Ids `obj` points to that a partner must also see: every `*_ref` and `*_refs` property at
    any depth (relationship ends, contents, observed SCOs, markings, inside extensions too),
    except the object's own `created_by_ref`."""
    if not isinstance(obj, dict):
        return set()
    found: set[str] = set()
    _collect(obj, found, 0, top=True)
    return found


@dataclass(frozen=True)
class Writer:
    """Who is storing objects, as `decide_version` needs to know them.

    kind: "analyst" (internal staff), "partner" or "feed". `identity` is the partner's STIX
    identity id; `added_by` the values the store records for this writer's rows (a partner's
    credential ids, or "feed:<name>").
    """

    kind: str
    name: str
    identity: str | None = None
    added_by: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FirstVersion:
    """Who first stored an object (in any collection) and whom the object names as its creator."""

    origin: str  # analyst | partner | feed
    added_by: str | None
    created_by_ref: str | None


def decide_version(writer: Writer, first: FirstVersion | None) -> Decision:
    """May `writer` store a version of an object whose first stored version is `first`?

    STIX 2.1 (section 3.6): only an object's creator may version it. A partner may version
    objects it created (their `created_by_ref` is its identity) or first submitted; a feed,
    objects that came from feeds (two feeds may mirror one upstream source); internal staff
    anything. Objects never seen before are anyone's to create. Fail closed: an unknown writer
    kind versions nothing. The reason never names the owner: the writer may not see it.
    """
    if first is None or writer.kind == "analyst":
        return ALLOWED
    if writer.kind == "partner":
        if writer.identity is not None and first.created_by_ref == writer.identity:
            return ALLOWED
        # A peer's pulled objects (origin "peer", added_by "peer:<slug>") are its submissions too.
        if (
            first.origin in ("partner", "peer")
            and first.added_by is not None
            and first.added_by in writer.added_by
        ):
            return ALLOWED
        return Decision(
            False,
            f"{writer.name} did not create this object (its created_by_ref is not {writer.name}'s "
            "identity, nor did it first submit it): only an object's creator may publish new versions",
        )
    if writer.kind == "feed":
        if first.origin == "feed":
            return ALLOWED
        return Decision(
            False,
            "the object was published by the national CERT or a partner, not a feed: "
            "a feed may not publish new versions of it",
        )
    return Decision(False, f"unknown writer kind {writer.kind!r}")


def decide_authorship(
    writer: Writer,
    *,
    stix_id: str,
    created_by_ref: str | None,
    exchange_identity: str | None,
    partner_identities: frozenset[str] = frozenset(),
) -> Decision:
    """May `writer` store a new object that is, or claims to be created by, the exchange itself
    or another registered partner?

    Only internal staff publish as the national CERT: a partner or feed storing the CERT's
    identity first would own it (and could revoke it, which blocks every later publication), and
    one naming the CERT as `created_by_ref` would show other partners a forgery as the CERT's.
    Likewise a partner never publishes as another partner (`partner_identities`: the registered
    partners' identities); the named partner could otherwise also version the forgery. Feeds
    may carry a partner's objects (a partner's own TAXII server mirrored), so this part is for
    partners only.
    """
    if writer.kind == "analyst":
        return ALLOWED
    if writer.kind == "partner":
        others = partner_identities - ({writer.identity} if writer.identity else set())
        if stix_id in others:
            return Decision(False, "this is another partner's identity: only that partner publishes it")
        if created_by_ref is not None and created_by_ref in others:
            return Decision(
                False, "created_by_ref names another partner: a partner publishes objects only as itself"
            )
    if exchange_identity is None:
        return ALLOWED
    if stix_id == exchange_identity:
        return Decision(False, "this is the national CERT's identity: only the CERT publishes it")
    if created_by_ref == exchange_identity:
        return Decision(
            False, "created_by_ref names the national CERT: only the CERT publishes objects as its own"
        )
    return ALLOWED
