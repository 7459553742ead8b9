"""Grants from agreements, and the per-object decision: may this partner see this object, and how.

Fail closed: no grant, an unknown level, a missing confidence under a minimum, an object in
its embargo or outside its audience, or a reference the partner cannot follow, all withhold.
Pure module: standard library and policies.* only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from policies.schemas import PROTECTED_PROPERTIES, AgreementDoc
from policies.tlp import LEVELS, rank

RED = rank("red")
HIGHEST_SHAREABLE = RED - 1  # amber+strict: red never leaves the exchange
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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


@dataclass(frozen=True)
class Decision:
    """Whether an object version may go to the partner, and the first rule that refused it."""

    allowed: bool
    reason: str


ALLOWED = Decision(True, "allowed")


def _in_force(doc: AgreementDoc, now: datetime, partner_active: bool) -> bool:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware; agreement windows are UTC dates")
    today = now.astimezone(timezone.utc).date()
    return doc.status == "active" and partner_active is True and doc.valid_from <= today <= doc.valid_until


def _microseconds(td: timedelta | None) -> int:
    if td is None:
        return 0
    return (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds


def read_grant(
    doc: AgreementDoc, *, collection: str, now: datetime, partner_active: bool = True
) -> ReadGrant | None:
    """The partner's read grant for `collection` at `now`, or None (fail closed)."""
    read = doc.read
    if read is None or collection not in read.collections or not _in_force(doc, now, partner_active):
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
    if write is None or collection not in write.collections or not _in_force(doc, now, partner_active):
        return None
    return WriteGrant(
        partner=doc.partner,
        collection=collection,
        types=None if write.types is None else frozenset(write.types),
        require_signature=write.require_signature,
    )


def _level_name(level: int) -> str:
    return LEVELS[level] if 0 <= level < len(LEVELS) else str(level)


def _timestamp(us: int) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        return f"{us} us after the epoch"


def decide(grant: ReadGrant | None, facts: ObjectFacts, *, now_us: int) -> Decision:
    """May the grant's partner see this object version now? The first rule that refuses says why.

    Revoked objects are not withheld for being revoked (partners must learn of revocations);
    every other rule still applies to them.
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
    # No embargo means none, as in the SQL filter (exchange.agreement.visibility).
    if grant.embargo_us and facts.date_added_us + grant.embargo_us > now_us:
        return Decision(False, f"under embargo until {_timestamp(facts.date_added_us + grant.embargo_us)}")
    if facts.audience is not None and grant.partner not in facts.audience:
        return Decision(False, f"audience excludes {grant.partner}")
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
        if exchange_identity is None:
            del out["created_by_ref"]
            changed = True
        elif out["created_by_ref"] != exchange_identity:
            out["created_by_ref"] = exchange_identity
            changed = True
    return out if changed else None


_CLOSURE_PROPERTIES: dict[str, tuple[str, ...]] = {
    "relationship": ("source_ref", "target_ref"),
    "sighting": ("sighting_of_ref", "observed_data_refs", "where_sighted_refs"),
    "report": ("object_refs",),
    "note": ("object_refs",),
    "opinion": ("object_refs",),
    "grouping": ("object_refs",),
}


def _ids(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def references(obj: dict[str, Any]) -> set[str]:
    """Ids `obj` points to that a partner must also see (relationship ends, contents, markings)."""
    if not isinstance(obj, dict):
        return set()
    found: set[str] = set()
    kind = obj.get("type")
    for prop in _CLOSURE_PROPERTIES.get(kind, ()) if isinstance(kind, str) else ():
        found |= _ids(obj.get(prop))
    found |= _ids(obj.get("object_marking_refs"))
    granular = obj.get("granular_markings")
    if isinstance(granular, list):
        for marking in granular:
            if isinstance(marking, dict):
                found |= _ids(marking.get("marking_ref"))
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
        if first.origin == "partner" and first.added_by is not None and first.added_by in writer.added_by:
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
