"""Store a batch of STIX objects: validate each, keep the good, report the bad.

One call is one envelope; the caller's transaction makes it all-or-nothing at the storage
level, while per-object validation failures are reported, not raised.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from exchange import metrics
from exchange.database.core import plan_for_current_size
from exchange.errors import InvalidJsonError, InvalidStixError, PayloadTooLargeError
from exchange.intel import release
from exchange.intel.models import Collection, DeletedVersion, ObjectRef, ObjectVersion
from exchange.intel.strictjson import canonical_text
from exchange.intel.timestamps import now_us, us_to_text
from exchange.intel.validation import StixMeta, validate_object
from policies.engine import FirstVersion, Writer, decide_authorship, decide_version, references
from policies.tlp import ALIAS_IDS, level_of_marking, marking_refs, rank, statement_level

ORIGINS = ("analyst", "partner", "peer", "feed")
# Origins that are a partner organisation: their versions record it (originator control).
PARTNER_ORIGINS = ("partner", "peer")
_CHUNK = 500
# origin_partner_pk of a partner version whose partner is unknown: never relayed (fail closed).
UNKNOWN_PARTNER_PK = 0


@dataclass
class IngestResult:
    """TAXII status-details for every object of the batch, plus counts for callers."""

    successes: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    created: int = 0
    updated: int = 0  # of `created`, how many are new versions of objects already stored
    duplicates: int = 0
    stored_ids: list[str] = field(default_factory=list)
    # Failures that are conflicts with what is stored (a revoked object), for REST's 409.
    conflicts: list[str] = field(default_factory=list)


@dataclass
class _Known:
    """What the whole store (every collection) says about one id before this batch."""

    first: FirstVersion | None = None
    first_us: int = 0
    originator_pk: int | None = None  # the partner that first brought the object in, if one did
    revoked_version: str | None = None  # the earliest revoked version, if any


@dataclass
class _Candidate:
    meta: StixMeta
    body: str
    version: str
    refs: set[str]
    row: dict[str, Any] | None = None


_IDENTIFIER = re.compile(
    r"[a-z0-9][a-z0-9-]{0,249}--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

# date_added advances by at least one millisecond per stored version within a collection, so a
# burst of N objects may run up to N ms ahead of the clock; see the README ("date_added").
DATE_ADDED_STEP_US = 1000


def version_key_from_us(us: int) -> str:
    """The sortable version text for a date_added, in the same form validation produces."""
    return us_to_text(us)[:-1] + "000Z"


def status_detail(obj: Any, message: str | None = None) -> dict[str, str]:
    """TAXII status-details (section 4.3.1) for one submitted object."""
    stix_id = obj.get("id") if isinstance(obj, dict) else None
    version = None
    if isinstance(obj, dict):
        version = obj.get("modified") or obj.get("created")
    detail = {
        "id": stix_id if isinstance(stix_id, str) else "",
        "version": version if isinstance(version, str) else "",
    }
    if message:
        detail["message"] = message
    return detail


@dataclass
class PreparedBatch:
    """A batch validated and canonicalised, ready to store: the costly part of ingest, which
    needs no database and so runs before the caller takes a write lock."""

    failures: list[dict[str, str]] = field(default_factory=list)
    valid: list[tuple[Any, _Candidate]] = field(default_factory=list)

    def extend(self, other: PreparedBatch) -> None:
        self.failures += other.failures
        self.valid += other.valid


def check_batch_size(count: int, limit: int) -> None:
    """PayloadTooLargeError when one request brings more objects than one transaction should store."""
    if count > limit:
        raise PayloadTooLargeError(
            f"the request holds {count} objects; send at most {limit} per request (split the rest)"
        )


def prepare(objects: Sequence[Any]) -> PreparedBatch:
    """Validate and canonicalise each object; a bad one becomes a failure, never an exception."""
    batch = PreparedBatch()
    for obj in objects:
        try:
            meta = validate_object(obj)
            body = canonical_text(obj)
        except (InvalidStixError, InvalidJsonError) as exc:
            batch.failures.append(status_detail(obj, exc.message))
            continue
        except RecursionError:  # nesting that slipped past the bounds: this object alone fails
            batch.failures.append(status_detail(obj, "the object is nested too deeply to validate"))
            continue
        batch.valid.append(
            (obj, _Candidate(meta=meta, body=body, version=meta.version, refs=closure_refs(obj)))
        )
    return batch


def ingest(
    db: Session,
    *,
    collection: Collection,
    objects: Sequence[Any] | PreparedBatch,
    origin: str,
    added_by: str | None = None,
    audience: Sequence[str] | None = None,  # staff's choice (empty: every partner); None: kept
    writer: Writer | None = None,
    exchange_identity: str | None = None,
    origin_partner_pk: int | None = None,
) -> IngestResult:
    """Store `objects` (validated here unless already prepared) in `collection`; exact duplicates
    count as successes.

    Who may version what is `policies.engine.decide_version`'s call, over every collection;
    a revoked object gets no new versions from anyone (STIX 2.1 section 3.6). With
    `exchange_identity`, partners and feeds may not publish as the CERT (`decide_authorship`).

    With `audience` None, a new version or copy of a versioned object keeps the audience the
    object has (`_kept_audiences`); only staff routes pass one, and an empty one means every partner.

    Every version records where it came from: `origin`, `added_by` (the credential, or
    "feed:<name>") and, for a partner or peer, `origin_partner_pk` (found from the credential
    when not given). A versioned object's originator is whoever first stored it, kept by every
    later version and copy, so nobody takes over another party's object by re-posting it.
    """
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}")
    if origin in PARTNER_ORIGINS and origin_partner_pk is None:
        origin_partner_pk = _credential_partner(db, added_by)
    if origin in PARTNER_ORIGINS and origin_partner_pk is None:
        # A partner we cannot name (its credential is gone): no partner relays what it sent.
        origin_partner_pk = UNKNOWN_PARTNER_PK
    if origin not in PARTNER_ORIGINS:
        origin_partner_pk = None
    writer = writer or _writer_for(origin, added_by)
    batch = objects if isinstance(objects, PreparedBatch) else prepare(objects)
    result = IngestResult(failures=list(batch.failures))
    audience_text = _audience_text(audience) if audience is not None else None
    valid = batch.valid
    if not valid:
        return result
    plan_for_current_size(db)

    # Serialise writers per collection: date_added must be handed out in commit order.
    high_water = db.execute(
        select(Collection.last_date_added_us).where(Collection.pk == collection.pk).with_for_update()
    ).scalar_one()
    stored = _stored_versions(db, collection.pk, {c.meta.stix_id for _, c in valid})
    owners = _known_objects(db, {c.meta.stix_id for _, c in valid})
    partner_identities = _partner_identities(db) if writer.kind == "partner" else frozenset()
    statements = _statement_levels(db, valid)
    latest_ranks = (
        _latest_tlp_ranks(db, {c.meta.stix_id for _, c in valid if c.meta.version})
        if writer.kind == "feed"
        else {}
    )
    kept = (
        _kept_audiences(db, collection.pk, {c.meta.stix_id for _, c in valid if c.meta.version})
        if audience is None
        else {}
    )

    # Whole, distinct milliseconds: clients that keep X-TAXII-Date-Added-Last to the millisecond
    # (OpenCTI does) then resume exactly after the last object they got, never inside a batch.
    next_us = max(now_us() // DATE_ADDED_STEP_US, high_water // DATE_ADDED_STEP_US + 1) * DATE_ADDED_STEP_US
    new_rows: list[_Candidate] = []
    for obj, cand in valid:
        versions = stored.setdefault(cand.meta.stix_id, {})
        if not cand.version:
            # No modified/created (e.g. an SCO): the same content from the same sender is the same
            # copy. Each party's copy is its own (the CERT's and the feeds' together): matching
            # another's would keep a value from others (posted first) and answer with that
            # party's time, telling the sender what another party holds, how marked, since when.
            same = next(
                (
                    v
                    for v, row in versions.items()
                    if row["body"] == cand.body and row["origin_partner_pk"] == origin_partner_pk
                ),
                None,
            )
            if same is not None:
                cand.version = same
            else:
                cand.version = version_key_from_us(next_us)
        known = versions.get(cand.version)
        if known is not None:
            if known["body"] == cand.body:
                result.successes.append(status_detail(obj) | {"version": str(known["version_text"])})
                result.duplicates += 1
            else:
                result.failures.append(
                    status_detail(
                        obj,
                        f"{cand.meta.stix_id} version {_shown_version(obj, known)} is already "
                        "stored with different content; a changed object needs a new 'modified'",
                    )
                )
            continue
        facts = owners.setdefault(cand.meta.stix_id, _Known())
        refusal = _refusal(db, writer, facts, cand, obj, exchange_identity, partner_identities)
        if refusal is None and writer.kind == "feed":
            refusal = _lowered_by_another_feed(
                cand, facts, added_by, latest_ranks, _tlp_rank(obj, cand.meta.tlp, statements), collection
            )
        if refusal is not None:
            result.failures.append(status_detail(obj, refusal))
            if facts.revoked_version is not None and refusal.startswith(f"{cand.meta.stix_id} was revoked"):
                result.conflicts.append(refusal)
            continue
        if facts.first is None:
            facts.first = FirstVersion(origin, added_by, _created_by(obj))
            facts.originator_pk = origin_partner_pk
        if cand.meta.revoked and (facts.revoked_version is None or cand.version < facts.revoked_version):
            facts.revoked_version = cand.version
        if versions:
            result.updated += 1
        date_added = next_us
        next_us += DATE_ADDED_STEP_US
        cand.row = {
            "collection_pk": collection.pk,
            "stix_id": cand.meta.stix_id,
            "type": cand.meta.type,
            "spec_version": cand.meta.spec_version,
            "version": cand.version,
            "version_text": cand.meta.modified or cand.meta.created or us_to_text(date_added),
            "date_added_us": date_added,
            "tlp_rank": _tlp_rank(obj, cand.meta.tlp, statements),
            "confidence": cand.meta.confidence,
            "revoked": cand.meta.revoked,
            "is_latest": False,
            "is_first": False,
            "origin": origin,
            "added_by": added_by,
            "origin_partner_pk": origin_partner_pk,
            # SCOs are not versioned and their ids come from their values: no one owns them.
            "originator_partner_pk": facts.originator_pk if cand.meta.version else None,
            "sighting_of_ref": _sighting_of(obj) if cand.meta.type == "sighting" else None,
            "audience": audience_text if audience is not None else kept.get(cand.meta.stix_id),
            "body": cand.body,
            "pk": None,
        }
        versions[cand.version] = cand.row
        new_rows.append(cand)
        result.successes.append(status_detail(obj) | {"version": cand.row["version_text"]})
        result.stored_ids.append(cand.meta.stix_id)

    if not new_rows:
        return result
    _set_version_flags(
        db,
        stored,
        {c.meta.stix_id for c in new_rows},
        per_sender={c.meta.stix_id for c in new_rows if not c.meta.version},
    )
    rows = [c.row for c in new_rows if c.row is not None]  # every new candidate got its row above
    first_pk = _first_free_pk(db)
    for i, row in enumerate(rows):
        if first_pk is None:
            del row["pk"]
        else:
            row["pk"] = first_pk + i
    for start in range(0, len(rows), _CHUNK):
        db.execute(insert(ObjectVersion), rows[start : start + _CHUNK])
    linked = _store_refs(db, collection.pk, [c for c in new_rows if c.refs])
    _mark_referrers(
        db, {c.meta.stix_id: statements[c.meta.stix_id] for c in new_rows if c.meta.stix_id in statements}
    )
    next_us = release.release_dependents(
        db,
        collection_pk=collection.pk,
        batch_from_us=rows[0]["date_added_us"],
        new_ids={c.meta.stix_id for c in new_rows},
        new_links=linked,
        next_us=next_us,
        step_us=DATE_ADDED_STEP_US,
    )
    db.execute(
        update(Collection)
        .where(Collection.pk == collection.pk)
        .values(last_date_added_us=next_us - DATE_ADDED_STEP_US)
    )
    result.created = len(rows)
    metrics.OBJECTS_INGESTED.inc(result.created, origin=origin)
    return result


# An audience naming no partner (no slug is empty, so ",," matches none): what staff pass to keep
# an object that was shared with nobody shared with nobody; an empty audience means every partner.
NO_PARTNER = ("",)


def _audience_text(slugs: Iterable[str]) -> str | None:
    """The stored form of an audience: ",slug,slug," (NULL: every partner; NO_PARTNER: none)."""
    chosen = sorted(set(slugs))
    return f",{','.join(chosen)}," if chosen else None


def _kept_audiences(db: Session, collection_pk: int, stix_ids: set[str]) -> dict[str, str | None]:
    """The audience each versioned object's new version or copy keeps when no staff member sets one:
    that of its latest version in this collection, else (a copy arriving here) the narrowest of its
    latest versions elsewhere, the partners in every one of their audiences (NO_PARTNER: none).

    An audience is the originator's control over the object: a version over TAXII, a bundle or a
    partner's re-post of what it was shown must not reach partners the object was kept from."""
    ids = sorted(stix_ids)
    here: dict[str, str | None] = {}
    elsewhere: dict[str, set[str] | None] = {}
    for start in range(0, len(ids), _CHUNK):
        for row in db.execute(
            select(ObjectVersion.stix_id, ObjectVersion.collection_pk, ObjectVersion.audience).where(
                ObjectVersion.stix_id.in_(ids[start : start + _CHUNK]), ObjectVersion.is_latest.is_(True)
            )
        ):
            if row.collection_pk == collection_pk:
                here[row.stix_id] = row.audience
            elif row.audience is not None:
                slugs = {slug for slug in row.audience.split(",") if slug}
                known = elsewhere.get(row.stix_id)
                elsewhere[row.stix_id] = slugs if known is None else known & slugs
    kept: dict[str, str | None] = {
        stix_id: _audience_text(slugs or NO_PARTNER)
        for stix_id, slugs in elsewhere.items()
        if slugs is not None
    }
    kept.update(here)
    return kept


def _writer_for(origin: str, added_by: str | None) -> Writer:
    """The writer a caller that names none is taken to be (partners: only this credential)."""
    kind = "partner" if origin in PARTNER_ORIGINS else origin
    return Writer(kind=kind, name=added_by or origin, added_by=frozenset({added_by} if added_by else ()))


def _credential_partner(db: Session, credential_id: str | None) -> int | None:
    from exchange.auth.models import Credential

    if credential_id is None:
        return None
    return db.scalar(select(Credential.partner_pk).where(Credential.id == credential_id))


def _sighting_of(obj: Any) -> str | None:
    value = obj.get("sighting_of_ref") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None


def _created_by(obj: Any) -> str | None:
    value = obj.get("created_by_ref") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _refusal(
    db: Session,
    writer: Writer,
    facts: _Known,
    cand: _Candidate,
    obj: Any,
    exchange_identity: str | None,
    partner_identities: frozenset[str],
) -> str | None:
    """Why this new version may not be stored, or None."""
    stix_id = cand.meta.stix_id
    # Only objects with created/modified are versioned (STIX 2.1 section 3.6); an SCO's id is
    # derived from its value, so every source that saw the value writes the same id.
    versioned = bool(cand.meta.version)
    checks = [
        decide_authorship(
            writer,
            stix_id=stix_id,
            created_by_ref=_created_by(obj),
            exchange_identity=exchange_identity,
            partner_identities=partner_identities,
        )
    ]
    if versioned:
        checks.insert(0, decide_version(writer, facts.first))
    for decision in checks:
        if not decision.allowed and not _copy_stored_elsewhere(db, stix_id, cand.version, cand.body):
            return f"{stix_id}: {decision.reason}"
    # An SCO is not versioned: a stored copy marked revoked (before validation refused that) is
    # its sender's own copy and revokes nobody else's.
    if versioned and facts.revoked_version is not None and cand.version >= facts.revoked_version:
        return (
            f"{stix_id} was revoked (version {facts.revoked_version}); a revoked object "
            "cannot get new versions (STIX 2.1 section 3.6): publish a new object instead"
        )
    return None


def _partner_identities(db: Session) -> frozenset[str]:
    """The STIX identities of every registered partner (none may be forged by another)."""
    from exchange.partner.models import Partner

    return frozenset(db.scalars(select(Partner.identity_id).where(Partner.identity_id.is_not(None))))


def _copy_stored_elsewhere(db: Session, stix_id: str, version: str, body: str) -> bool:
    """Whether exactly this version is already stored in some collection (a copy changes nothing)."""
    return (
        db.scalars(
            select(ObjectVersion.pk).where(
                ObjectVersion.stix_id == stix_id, ObjectVersion.version == version, ObjectVersion.body == body
            )
        ).first()
        is not None
    )


def _known_objects(db: Session, stix_ids: Iterable[str]) -> dict[str, _Known]:
    """Per id of this batch already stored anywhere: who first stored it, and its first revocation
    (of a versioned object: an SCO's copy is its sender's own and revokes no one else's)."""
    found: dict[str, _Known] = {}
    ids = sorted(stix_ids)
    for start in range(0, len(ids), _CHUNK):
        rows = db.execute(
            select(
                ObjectVersion.stix_id,
                ObjectVersion.version,
                ObjectVersion.date_added_us,
                ObjectVersion.origin,
                ObjectVersion.added_by,
                ObjectVersion.revoked,
                ObjectVersion.is_first,
                ObjectVersion.body,
                ObjectVersion.originator_partner_pk,
            ).where(
                ObjectVersion.stix_id.in_(ids[start : start + _CHUNK]),
                ObjectVersion.is_first.is_(True) | ObjectVersion.revoked.is_(True),
            )
        )
        for row in rows:
            facts = found.setdefault(row.stix_id, _Known())
            if row.is_first and (facts.first is None or row.date_added_us < facts.first_us):
                try:
                    creator = _created_by(orjson.loads(row.body))
                except orjson.JSONDecodeError:
                    creator = None
                facts.first = FirstVersion(row.origin, row.added_by, creator)
                facts.first_us = row.date_added_us
                facts.originator_pk = row.originator_partner_pk
            if (
                row.revoked
                and (facts.revoked_version is None or row.version < facts.revoked_version)
                and _is_versioned(row.body)
            ):
                facts.revoked_version = row.version
    return found


def _latest_tlp_ranks(db: Session, stix_ids: set[str]) -> dict[str, int]:
    """The most restrictive TLP the latest versions of each id carry, in any collection (an
    unmarked one at its collection's default)."""
    ranks: dict[str, int] = {}
    ids = sorted(stix_ids)
    for start in range(0, len(ids), _CHUNK):
        for stix_id, tlp_rank, default_tlp in db.execute(
            select(ObjectVersion.stix_id, ObjectVersion.tlp_rank, Collection.default_tlp)
            .join(Collection, Collection.pk == ObjectVersion.collection_pk)
            .where(ObjectVersion.stix_id.in_(ids[start : start + _CHUNK]), ObjectVersion.is_latest.is_(True))
        ):
            level = tlp_rank if tlp_rank is not None else rank(default_tlp)
            ranks[stix_id] = max(level, ranks.get(stix_id, level))
    return ranks


def _lowered_by_another_feed(
    cand: _Candidate,
    facts: _Known,
    added_by: str | None,
    latest_ranks: dict[str, int],
    new_rank: int | None,
    collection: Collection,
) -> str | None:
    """Why a feed's new version may not lower the TLP of an object another source created, or None.

    Feeds may version each other's objects (a feed that re-publishes another's list), but one
    feed marking another's AMBER indicator CLEAR would hand it to every partner whose ceiling is
    below AMBER: declassifying is for the object's own source or the CERT's analysts."""
    stix_id = cand.meta.stix_id
    had = latest_ranks.get(stix_id)
    if had is None or facts.first is None or facts.first.added_by == added_by:
        return None
    now = new_rank if new_rank is not None else rank(collection.default_tlp)
    if now >= had:
        return None
    return (
        f"{stix_id}: this version would lower its TLP, which another source set; only that source "
        "or the CERT's analysts may lower it"
    )


def _is_versioned(body: str) -> bool:
    """Whether a stored body has created or modified (STIX 2.1 section 3.6: only those versions)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True  # unreadable: keep the revocation (fail closed)
    return isinstance(obj, dict) and ("created" in obj or "modified" in obj)


def _statement_levels(db: Session, valid: list[tuple[Any, _Candidate]]) -> dict[str, str]:
    """Marking-definition id -> TLP level, for the statement markings that read as a TLP level
    ("TLP:RED") among those this batch defines or references (defined here or stored earlier)."""
    levels: dict[str, str] = {}
    wanted: set[str] = set()
    for obj, cand in valid:
        if cand.meta.type == "marking-definition":
            level = statement_level(obj)
            if level is not None:
                levels[cand.meta.stix_id] = level
        wanted |= {m for m in marking_refs(obj) if level_of_marking(m) is None and m not in ALIAS_IDS}
    ids = sorted(wanted - set(levels))
    for start in range(0, len(ids), _CHUNK):
        for body in db.scalars(
            select(ObjectVersion.body).where(
                ObjectVersion.stix_id.in_(ids[start : start + _CHUNK]),
                ObjectVersion.type == "marking-definition",
            )
        ):
            marking = orjson.loads(body)
            level = statement_level(marking)
            if level is not None:
                levels[marking["id"]] = max(level, levels.get(marking["id"], level), key=rank)
    return levels


def _tlp_rank(obj: Any, tlp: str | None, statements: dict[str, str]) -> int | None:
    """The most restrictive of the object's TLP markings, statement markings read as TLP included."""
    ranks = [rank(tlp)] if tlp else []
    if statements:
        ranks += [rank(statements[m]) for m in marking_refs(obj) if m in statements]
    return max(ranks) if ranks else None


def _mark_referrers(db: Session, levels: dict[str, str]) -> None:
    """Objects stored before the statement marking they reference take its level now, never one
    below what they had (their TLP marking, else their collection's default): a definition that
    arrives later, perhaps from another party, may only make its referrers stricter."""
    for marking_id, level in levels.items():
        level_rank = rank(level)
        referrers = select(ObjectRef.object_version_pk).where(ObjectRef.ref_id == marking_id)
        rows = db.execute(
            select(ObjectVersion.pk, ObjectVersion.tlp_rank, Collection.default_tlp)
            .join(Collection, Collection.pk == ObjectVersion.collection_pk)
            .where(ObjectVersion.pk.in_(referrers))
        )
        stricter: dict[int, list[int]] = {}
        for row in rows:
            had = row.tlp_rank if row.tlp_rank is not None else rank(row.default_tlp)
            now = max(had, level_rank)
            if now != row.tlp_rank:
                stricter.setdefault(now, []).append(row.pk)
        for value, pks in stricter.items():
            for start in range(0, len(pks), _CHUNK):
                db.execute(
                    update(ObjectVersion)
                    .where(ObjectVersion.pk.in_(pks[start : start + _CHUNK]))
                    .values(tlp_rank=value)
                )


def closure_refs(obj: dict[str, Any]) -> set[str]:
    """Ids a partner must be able to see before it may see `obj` (TLP markings are known to all).

    A reference that is not an identifier (STIX requires one in every `*_ref`) can never be
    resolved: it is kept as an id of its own that nothing has, so `obj` stays withheld from
    partners (fail closed) and the stored link still fits its column.
    """
    found = set()
    for ref in references(obj):
        if level_of_marking(ref) is not None or ref in ALIAS_IDS:
            continue
        if not _IDENTIFIER.fullmatch(ref):
            ref = "unresolvable--" + hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
        found.add(ref)
    return found


def _first_free_pk(db: Session) -> int | None:
    """On SQLite, the pk after every one ever used, stored or deleted; None elsewhere.

    SQLite numbers a new row after the largest pk present, so deleting the newest version freed
    its pk for the next one, and the disclosure ledger, which names versions by pk (a deleted one
    through deleted_version), would have named the new version too. PostgreSQL's sequence never
    gives a number twice. Ingest holds SQLite's write lock, so no other writer numbers meanwhile.
    """
    if db.get_bind().dialect.name != "sqlite":
        return None
    stored = db.scalar(select(func.max(ObjectVersion.pk))) or 0
    deleted = db.scalar(select(func.max(DeletedVersion.pk))) or 0
    return max(stored, deleted) + 1


def _store_refs(db: Session, collection_pk: int, cands: list[_Candidate]) -> dict[int, set[str]]:
    """Store the closure links of new versions; {version pk: the ids it references}."""
    if not cands:
        return {}
    by_date = {c.row["date_added_us"]: c for c in cands if c.row is not None}
    stamps = sorted(by_date)
    links = []
    linked: dict[int, set[str]] = {}
    for start in range(0, len(stamps), _CHUNK):
        for pk, stamp in db.execute(
            select(ObjectVersion.pk, ObjectVersion.date_added_us).where(
                ObjectVersion.collection_pk == collection_pk,
                ObjectVersion.date_added_us.in_(stamps[start : start + _CHUNK]),
            )
        ):
            links += [{"object_version_pk": pk, "ref_id": ref} for ref in sorted(by_date[stamp].refs)]
            linked[pk] = by_date[stamp].refs
    for start in range(0, len(links), _CHUNK):
        db.execute(insert(ObjectRef), links[start : start + _CHUNK])
    return linked


def _shown_version(obj: Any, known: dict[str, Any]) -> str:
    if isinstance(obj, dict):
        value = obj.get("modified") or obj.get("created")
        if isinstance(value, str):
            return value
    return str(known["version_text"])


def _stored_versions(
    db: Session, collection_pk: int, stix_ids: Iterable[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """stix_id -> version -> row facts, for the ids of this batch already in the collection."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    ids = sorted(stix_ids)
    for start in range(0, len(ids), _CHUNK):
        rows = db.execute(
            select(
                ObjectVersion.pk,
                ObjectVersion.stix_id,
                ObjectVersion.version,
                ObjectVersion.version_text,
                ObjectVersion.body,
                ObjectVersion.is_latest,
                ObjectVersion.is_first,
                ObjectVersion.origin_partner_pk,
            ).where(
                ObjectVersion.collection_pk == collection_pk,
                ObjectVersion.stix_id.in_(ids[start : start + _CHUNK]),
            )
        )
        for row in rows:
            found.setdefault(row.stix_id, {})[row.version] = dict(row._mapping)
    return found


def _set_version_flags(
    db: Session,
    stored: dict[str, dict[str, dict[str, Any]]],
    touched: set[str],
    *,
    per_sender: Iterable[str] = (),
) -> None:
    """Mark the first and latest version of each touched object, fixing stored rows too.

    An unversioned object (`per_sender`: an SCO) has one copy per sender (the CERT and feeds
    count as one), each with its own first and latest: reads take latest versions, so one
    party's later copy must not push another's out of what partners read."""
    by_sender = set(per_sender)
    for stix_id in touched:
        versions = stored[stix_id]
        sender = stix_id in by_sender
        bounds: dict[int | None, tuple[str, str]] = {}
        for version, row in versions.items():
            group = row["origin_partner_pk"] if sender else None
            low, high = bounds.get(group, (version, version))
            bounds[group] = (min(low, version), max(high, version))
        for version, row in versions.items():
            first, latest = bounds[row["origin_partner_pk"] if sender else None]
            want_first, want_latest = version == first, version == latest
            if row["pk"] is None:
                row["is_first"], row["is_latest"] = want_first, want_latest
            elif (row["is_first"], row["is_latest"]) != (want_first, want_latest):
                db.execute(
                    update(ObjectVersion)
                    .where(ObjectVersion.pk == row["pk"])
                    .values(is_first=want_first, is_latest=want_latest)
                )
                row["is_first"], row["is_latest"] = want_first, want_latest


def refresh_version_flags(db: Session, collection_pk: int, stix_id: str) -> None:
    """Recompute first/latest for one object after some of its versions were deleted."""
    stored = _stored_versions(db, collection_pk, [stix_id])
    if stored:
        versioned = any(_is_versioned(row["body"]) for row in stored[stix_id].values())
        _set_version_flags(db, stored, {stix_id}, per_sender=() if versioned else (stix_id,))
