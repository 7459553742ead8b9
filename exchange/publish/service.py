"""Analyst publishing: build STIX 2.1 from plain fields, store it through ingest, version it.

What the exchange itself produces passes stix2-validator's strict mode:
- ids: deterministic where re-publishing must update (indicators, relationships, the
  extension definition), via `exchange.intel.ids.deterministic_id`: version-4-shaped UUIDs
  from SHA-256, because strict mode flags a UUIDv5 on an SDO or SRO (check 103);
- incident details in the OASIS Incident Core Extension (property names confirmed against
  oasis-open/cti-stix-common-objects, extension-definition-specifications/incident-core/
  "Incident Core Extension.adoc", version 2.0); first/last seen, which that extension lacks,
  as `x_exchange_*` top-level properties declared by our own toplevel-property-extension
  (strict mode flags undeclared custom properties, check 401);
- indicator -> incident links are `related-to`: strict mode flags `indicates` towards an
  incident (check 202: STIX 2.1 suggests it only towards attack patterns, malware, ...).
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.config import Settings
from exchange.errors import ConflictError, ExchangeError, InvalidStixError, NotFoundError
from exchange.intel import service as intel
from exchange.intel.ids import deterministic_id
from exchange.intel.ingest import IngestResult, ingest
from exchange.intel.models import ApiRoot, Collection, ObjectRef, ObjectVersion, TaxiiStatus
from exchange.intel.timestamps import now_us, stix_version_key, text_to_us, us_to_text
from exchange.intel.validation import SCO_TYPES, validate_object
from exchange.partner.models import Partner
from exchange.publish import observables
from exchange.publish.schemas import IncidentIn
from policies.tlp import CANONICAL_MARKINGS, TLP_2_0

INCIDENT_CORE = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
# Severity words to Incident Core `criticality` (0-100), per its Appendix A "5 Qualitative" scale.
CRITICALITY = {"low": 15, "medium": 40, "high": 70, "critical": 95}
FIRST_SEEN = "x_exchange_first_seen"
LAST_SEEN = "x_exchange_last_seen"
RELATIONSHIP_TYPE = "related-to"
INDICATOR_TYPES = ["malicious-activity"]
# created/modified of the objects that describe the exchange itself (identity, extension).
STABLE_TIMESTAMP = "2026-01-01T00:00:00.000Z"
LOOKUP_LIMIT = 200
FIXED_PROPERTIES = ("id", "type", "spec_version", "created", "modified")
_BUNDLE_ID = re.compile(r"bundle--[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_TLP_CLEAR = TLP_2_0["clear"]["id"]


class PublishInputError(ExchangeError):
    """A publish request that names something wrong; nothing of it is stored."""

    status = 422
    title = "Invalid publish request"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Stored:
    """One object of a publish and whether this call stored a new version of it."""

    id: str
    type: str
    version: str
    new: bool


@dataclass(frozen=True)
class Place:
    """Where a stored version lives: enough to build its TAXII URL."""

    api_root: str
    collection_alias: str
    collection_id: str


@dataclass
class PublishedIncident:
    incident_id: str
    place: Place
    objects: list[Stored]


@dataclass
class NewVersion:
    id: str
    version: str
    revoked: bool
    changed: bool
    places: list[tuple[Place, bool]] = field(default_factory=list)  # (where, stored new?)


# ---- time -----------------------------------------------------------------------------------

def stix_now(after: str | None = None) -> str:
    """Now as a STIX timestamp with milliseconds, strictly later than `after` when given."""
    ms = now_us() // 1000
    if after:
        ms = max(ms, text_to_us(after) // 1000 + 1)
    return us_to_text(ms * 1000)[:23] + "Z"


def stix_timestamp(moment: datetime) -> str:
    """An aware datetime as a STIX UTC timestamp (milliseconds unless finer digits matter)."""
    utc = moment.astimezone(timezone.utc)
    micros = utc.microsecond
    fraction = f"{micros // 1000:03d}" if micros % 1000 == 0 else f"{micros:06d}"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + fraction + "Z"


# ---- what is stored already -----------------------------------------------------------------

class _History:
    """Latest stored versions, read once per object per request."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self._latest: dict[str, dict[str, Any] | None] = {}

    def latest(self, stix_id: str) -> dict[str, Any] | None:
        """The newest stored version of `stix_id` in any collection, parsed."""
        if stix_id not in self._latest:
            body = self.db.scalar(
                select(ObjectVersion.body).where(ObjectVersion.stix_id == stix_id)
                .order_by(ObjectVersion.version.desc()).limit(1)
            )
            self._latest[stix_id] = orjson.loads(body) if body is not None else None
        return self._latest[stix_id]

    def audience_in(self, collection_pk: int, stix_id: str) -> tuple[bool, str | None]:
        """(stored in the collection?, the audience text of its latest version there)."""
        row = self.db.execute(
            select(ObjectVersion.audience).where(
                ObjectVersion.collection_pk == collection_pk, ObjectVersion.stix_id == stix_id,
                ObjectVersion.is_latest.is_(True),
            ).limit(1)
        ).first()
        return (False, None) if row is None else (True, row.audience)

    def free_id(self, stix_type: str, *parts: str, creator: str) -> str:
        """The deterministic id for `parts`, unless that id is revoked (STIX forbids versions
        after revocation) or taken by another creator (ours are predictable): then the next
        generation of it."""
        for generation in range(1, 1000):
            extra = () if generation == 1 else (f"generation {generation}",)
            candidate = deterministic_id(stix_type, *parts, *extra)
            stored = self.latest(candidate)
            if stored is None or (stored.get("revoked") is not True
                                  and stored.get("created_by_ref", creator) == creator):
                return candidate
        raise ConflictError(f"every generation of the {stix_type} id for {parts!r} is taken")


def _without_modified(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "modified"}


def _settle(history: _History, obj: dict[str, Any], *, carry: Sequence[str] = ("created",),
            force: bool = False) -> dict[str, Any]:
    """The stored latest version when `obj` says the same, else `obj` as its next version."""
    stored = history.latest(obj["id"])
    if stored is None:
        return obj
    for name in carry:
        if name in stored:
            obj[name] = stored[name]
    if not force and _without_modified(obj) == _without_modified(stored):
        return stored
    obj["modified"] = stix_now(after=stored.get("modified") or stored.get("created"))
    return obj


def _audience_text(audience: Sequence[str] | None) -> str | None:
    """The stored form of an audience, as ingest writes it."""
    return f",{','.join(sorted(set(audience)))}," if audience else None


def _audience_list(text: str | None) -> list[str] | None:
    return [slug for slug in text.split(",") if slug] if text else None


# ---- lookups of names in the request ---------------------------------------------------------

def _collection(db: Session, settings: Settings, ref: str, *, field_name: str = "collection") -> Collection:
    root = intel.get_api_root(db, settings.api_root)
    coll = intel.get_collection(db, api_root_pk=root.pk, ref=ref, missing_ok=True) if root else None
    if coll is None:
        raise PublishInputError(field_name, f"no collection {ref!r} in API root {settings.api_root!r}")
    return coll


def _check_audience(db: Session, audience: Sequence[str]) -> None:
    wanted = set(audience)
    if not wanted:
        return
    known = set(db.scalars(select(Partner.slug).where(Partner.slug.in_(sorted(wanted)))))
    unknown = sorted(wanted - known)
    if unknown:
        raise PublishInputError("audience", f"no partner {', '.join(map(repr, unknown))} "
                                            "(audience names partner slugs)")


def _lock(db: Session, collections: Sequence[Collection]) -> None:
    """Serialise publishers per collection from the first read of stored versions to the write
    (ingest takes the same row lock), in pk order so two publishers cannot deadlock."""
    pks = sorted({c.pk for c in collections})
    db.execute(select(Collection.pk).where(Collection.pk.in_(pks)).order_by(Collection.pk).with_for_update()).all()


def _place(db: Session, coll: Collection) -> Place:
    root = db.get(ApiRoot, coll.api_root_pk)
    return Place(root.name if root else "", coll.alias, coll.id)


# ---- the objects describing the exchange itself ----------------------------------------------

def identity(history: _History, settings: Settings) -> dict[str, Any]:
    """The national CERT's identity: the stored one while its name is current."""
    stored = history.latest(settings.identity_id)
    if stored is not None and stored.get("name") == settings.identity_name and not stored.get("revoked"):
        return stored
    built = {
        "type": "identity", "spec_version": "2.1", "id": settings.identity_id,
        "created": STABLE_TIMESTAMP, "modified": STABLE_TIMESTAMP,
        "name": settings.identity_name, "identity_class": "organization",
        "object_marking_refs": [_TLP_CLEAR],
    }
    return _settle(history, built)


def properties_extension(history: _History, settings: Settings) -> dict[str, Any]:
    """The extension definition that declares our top-level incident properties."""
    built = {
        "type": "extension-definition", "spec_version": "2.1",
        "id": deterministic_id("extension-definition", settings.identity_id, "incident properties"),
        "created": STABLE_TIMESTAMP, "modified": STABLE_TIMESTAMP,
        "created_by_ref": settings.identity_id,
        "name": "Incident activity window",
        "description": f"When the activity of an incident published by {settings.identity_name} "
                       "was first and last seen (the Incident Core Extension has no such properties).",
        "schema": f"{FIRST_SEEN} (timestamp): when the incident's activity was first seen. "
                  f"{LAST_SEEN} (timestamp): when it was last seen; not before {FIRST_SEEN}.",
        "version": "1.0",
        "extension_types": ["toplevel-property-extension"],
        "extension_properties": [FIRST_SEEN, LAST_SEEN],
        "object_marking_refs": [_TLP_CLEAR],
    }
    return _settle(history, built)


# ---- POST /incidents -------------------------------------------------------------------------

def publish_incident(db: Session, incident_in: IncidentIn, *, settings: Settings, actor: str) -> PublishedIncident:
    """Build the incident, its indicators and links; store them all or nothing."""
    coll = _collection(db, settings, incident_in.collection)
    _check_audience(db, incident_in.audience)
    _lock(db, [coll])
    history = _History(db)
    marking = TLP_2_0[incident_in.tlp]["id"]
    now = stix_now()
    creator = identity(history, settings)
    shared: list[dict[str, Any]] = [creator]

    incident_id = _incident_id(history, incident_in.id, settings)
    incident: dict[str, Any] = {
        "type": "incident", "spec_version": "2.1", "id": incident_id, "created": now, "modified": now,
        "created_by_ref": settings.identity_id, "name": incident_in.title,
    }
    if incident_in.description:
        incident["description"] = incident_in.description
    if incident_in.confidence is not None:
        incident["confidence"] = incident_in.confidence
    core: dict[str, Any] = {"extension_type": "property-extension", "determination": incident_in.determination,
                            "investigation_status": incident_in.investigation_status}
    if incident_in.incident_types:
        core["incident_types"] = list(dict.fromkeys(incident_in.incident_types))
    if incident_in.severity:
        core["criticality"] = CRITICALITY[incident_in.severity]
    extensions: dict[str, Any] = {INCIDENT_CORE: core}
    if incident_in.first_seen or incident_in.last_seen:
        definition = properties_extension(history, settings)
        shared.append(definition)
        extensions[definition["id"]] = {"extension_type": "toplevel-property-extension"}
        if incident_in.first_seen:
            incident[FIRST_SEEN] = stix_timestamp(incident_in.first_seen)
        if incident_in.last_seen:
            incident[LAST_SEEN] = stix_timestamp(incident_in.last_seen)
    incident["extensions"] = extensions
    incident["object_marking_refs"] = [marking]

    audience = _audience_text(incident_in.audience)

    def settled(obj: dict[str, Any], carry: Sequence[str] = ("created",)) -> dict[str, Any]:
        # A changed audience needs a new version: the stored row's audience is what partners get.
        present, stored_audience = history.audience_in(coll.pk, obj["id"])
        return _settle(history, obj, carry=carry, force=present and stored_audience != audience)

    if incident_in.id:
        incident = settled(incident)
    content: list[tuple[str, dict[str, Any]]] = [("incident", incident)]
    valid_from = stix_timestamp(incident_in.first_seen) if incident_in.first_seen else now
    seen: set[str] = set()
    for index, item in enumerate(incident_in.observables):
        observable = item.observable
        if observable.pattern in seen:
            continue
        seen.add(observable.pattern)
        where = f"observables[{index}]"
        common = {"created": now, "modified": now, "created_by_ref": settings.identity_id,
                  "object_marking_refs": [marking]}
        if incident_in.confidence is not None:
            common["confidence"] = incident_in.confidence
        indicator = {
            "type": "indicator", "spec_version": "2.1",
            "id": history.free_id("indicator", observable.pattern, creator=settings.identity_id), **common,
            "name": item.name or observable.label,
            "description": f"{observable.label}, published by {settings.identity_name}",
            "indicator_types": list(INDICATOR_TYPES), "pattern": observable.pattern,
            "pattern_type": "stix", "pattern_version": "2.1", "valid_from": valid_from,
        }
        # An observable published before keeps its first dates, and its name unless renamed.
        indicator = settled(indicator, ("created", "valid_from") if item.name else ("created", "valid_from", "name"))
        relationship = {
            "type": "relationship", "spec_version": "2.1",
            "id": history.free_id("relationship", RELATIONSHIP_TYPE, indicator["id"], incident_id,
                                  creator=settings.identity_id), **common,
            "relationship_type": RELATIONSHIP_TYPE, "description": "The indicator indicates this incident",
            "source_ref": indicator["id"], "target_ref": incident_id,
        }
        content += [(where, indicator), (where, settled(relationship))]

    refs = {ref for _, obj in content for ref in obj.get("object_marking_refs", ())}
    refs |= {ref for obj in shared for ref in obj.get("object_marking_refs", ())}
    markings = [CANONICAL_MARKINGS[ref] for ref in sorted(refs) if ref in CANONICAL_MARKINGS]
    shared = markings + shared

    for where, obj in [(o["type"], o) for o in shared] + content:
        try:
            validate_object(obj)
        except InvalidStixError as exc:
            raise PublishInputError(where, exc.message) from None
    # The exchange's own objects are never narrowed to an audience; the incident's content is.
    first = ingest(db, collection=coll, objects=shared, origin="analyst", added_by=actor)
    second = ingest(db, collection=coll, objects=[obj for _, obj in content], origin="analyst",
                    added_by=actor, audience=incident_in.audience or None)
    _raise_failures(first, second)
    new_ids = set(first.stored_ids) | set(second.stored_ids)
    stored = [Stored(o["id"], o["type"], o.get("modified") or o["created"], o["id"] in new_ids)
              for o in shared + [obj for _, obj in content]]
    audit.record(db, actor=actor, action="publish.incident", target=incident_id, details={
        "collection": coll.alias, "tlp": incident_in.tlp, "audience": sorted(set(incident_in.audience)),
        "indicators": len(seen), "new": first.created + second.created,
        "unchanged": first.duplicates + second.duplicates,
    })
    return PublishedIncident(incident_id, _place(db, coll), stored)


def _incident_id(history: _History, given: str | None, settings: Settings) -> str:
    if given is None:
        return f"incident--{uuid.uuid4()}"
    stored = history.latest(given)
    if stored is None:
        raise PublishInputError("id", f"no incident {given!r} is stored; leave 'id' out to publish a new one")
    if stored.get("revoked") is True:
        raise PublishInputError("id", f"{given} is revoked and STIX allows no later versions; "
                                      "publish a new incident instead")
    _check_creator(stored, settings, field_name="id")
    return given


def _raise_failures(*results: IngestResult) -> None:
    failures = [f for result in results for f in result.failures]
    if failures:
        raise PublishInputError("objects", "; ".join(f.get("message", f["id"]) for f in failures))


# ---- POST /bundles ---------------------------------------------------------------------------

def publish_bundle(db: Session, bundle: Any, *, collection: str, audience: Sequence[str], settings: Settings,
                   actor: str) -> dict[str, Any]:
    """Store a STIX 2.1 bundle's objects like a TAXII POST: good ones kept, bad ones reported."""
    objects = _bundle_objects(bundle)
    coll = _collection(db, settings, collection)
    _check_audience(db, audience)
    result = ingest(db, collection=coll, objects=objects, origin="analyst", added_by=actor,
                    audience=list(audience) or None)
    status = TaxiiStatus(
        id=str(uuid.uuid4()), api_root_pk=coll.api_root_pk, owner=actor, status="complete",
        request_timestamp=us_to_text(now_us()), total_count=len(objects),
        success_count=len(result.successes), failure_count=len(result.failures), pending_count=0,
        successes=orjson.dumps(result.successes).decode(), failures=orjson.dumps(result.failures).decode(),
        pendings="[]",
    )
    db.add(status)
    db.flush()
    audit.record(db, actor=actor, action="publish.bundle", target=coll.alias, details={
        "bundle": bundle["id"], "new": result.created, "duplicates": result.duplicates,
        "failures": len(result.failures), "audience": sorted(set(audience)),
    })
    return {
        "id": status.id, "status": status.status, "request_timestamp": status.request_timestamp,
        "total_count": status.total_count, "success_count": status.success_count,
        "successes": result.successes, "failure_count": status.failure_count, "failures": result.failures,
        "pending_count": 0, "pendings": [],
    }


def _bundle_objects(bundle: Any) -> list[Any]:
    if not isinstance(bundle, dict):
        raise PublishInputError("bundle", "the body must be a STIX bundle: a JSON object")
    if bundle.get("type") != "bundle":
        raise PublishInputError("type", f"must be \"bundle\", got {bundle.get('type')!r}")
    if not isinstance(bundle.get("id"), str) or not _BUNDLE_ID.fullmatch(bundle["id"]):
        raise PublishInputError("id", f"{bundle.get('id')!r} is not bundle--<lowercase RFC 4122 UUID>")
    if "spec_version" in bundle:
        raise PublishInputError("spec_version", "a STIX 2.1 bundle has no spec_version "
                                                "(this looks like a STIX 2.0 bundle)")
    extra = sorted(k for k in bundle if k not in ("type", "id", "objects") and not k.startswith("x_"))
    if extra:
        raise PublishInputError(extra[0], "is not a property of a STIX 2.1 bundle")
    objects = bundle.get("objects")
    if not isinstance(objects, list) or not objects:
        raise PublishInputError("objects", "must be a non-empty list of STIX objects")
    return objects


# ---- POST /objects/{id}/revoke and /versions -------------------------------------------------

def revoke(db: Session, stix_id: str, *, settings: Settings, actor: str, collection: str | None = None) -> NewVersion:
    """A new version with revoked: true in every collection holding the object (or one)."""
    holdings = _holdings(db, stix_id, settings, collection)
    history = _History(db)
    base = history.latest(stix_id)
    assert base is not None  # holdings found it
    _check_versionable(base, settings)
    changed = base.get("revoked") is not True
    new = {**base, "revoked": True, "modified": stix_now(after=_version_of(base))} if changed else base
    outcome = _store_everywhere(db, holdings, new, actor=actor, changed=changed)
    audit.record(db, actor=actor, action="object.revoke", target=stix_id, details={
        "version": outcome.version, "collections": [p.collection_alias for p, _ in outcome.places],
        "changed": changed,
    })
    return outcome


def new_version(db: Session, stix_id: str, changes: Any, *, settings: Settings, actor: str,
                collection: str | None = None) -> NewVersion:
    """The latest version with `changes` applied (null removes a property), validated, stored
    with modified = now in every collection holding the object (or one)."""
    if not isinstance(changes, dict) or not changes:
        raise PublishInputError("body", "send a JSON object of the properties to change (null removes one)")
    fixed = [name for name in FIXED_PROPERTIES if name in changes]
    if fixed:
        raise PublishInputError(fixed[0], "cannot be changed in a new version "
                                          "(id, type, spec_version and created are fixed; the exchange sets modified)")
    holdings = _holdings(db, stix_id, settings, collection)
    history = _History(db)
    base = history.latest(stix_id)
    assert base is not None
    _check_versionable(base, settings)
    if base.get("revoked") is True:
        raise ConflictError(f"{stix_id} is revoked; STIX 2.1 allows no later versions")
    merged = dict(base)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    changed = _without_modified(merged) != _without_modified(base)
    if changed:
        merged["modified"] = stix_now(after=_version_of(base))
        try:
            validate_object(merged)
        except InvalidStixError as exc:
            raise PublishInputError("body", exc.message) from None
    outcome = _store_everywhere(db, holdings, merged if changed else base, actor=actor, changed=changed)
    audit.record(db, actor=actor, action="object.version", target=stix_id, details={
        "version": outcome.version, "properties": sorted(changes), "changed": changed,
        "collections": [p.collection_alias for p, _ in outcome.places],
    })
    return outcome


@dataclass(frozen=True)
class _Holding:
    collection: Collection
    audience: str | None


def _holdings(db: Session, stix_id: str, settings: Settings, collection: str | None) -> list[_Holding]:
    """The collections holding `stix_id` (locked), with the audience of their latest version."""
    query = select(ObjectVersion.collection_pk, ObjectVersion.audience).where(
        ObjectVersion.stix_id == stix_id, ObjectVersion.is_latest.is_(True))
    only = None
    if collection is not None:
        only = _collection(db, settings, collection)
        query = query.where(ObjectVersion.collection_pk == only.pk)
    rows = db.execute(query).all()
    if not rows:
        where = f" in collection {only.alias!r}" if only is not None else ""
        raise NotFoundError(f"no object {stix_id!r} is stored{where}")
    collections = {c.pk: c for c in db.scalars(select(Collection).where(Collection.pk.in_({r.collection_pk for r in rows})))}
    _lock(db, list(collections.values()))
    return [_Holding(collections[r.collection_pk], r.audience) for r in sorted(rows, key=lambda r: r.collection_pk)]


def _check_versionable(obj: dict[str, Any], settings: Settings) -> None:
    kind = obj.get("type")
    if kind in SCO_TYPES or kind == "marking-definition" or "modified" not in obj:
        raise ConflictError(f"{obj.get('id')}: {kind} objects are not versioned in STIX 2.1 "
                            "(no 'modified'); delete it over TAXII instead")
    _check_creator(obj, settings)


def _check_creator(obj: dict[str, Any], settings: Settings, *, field_name: str | None = None) -> None:
    creator = obj.get("created_by_ref")
    if creator is not None and creator != settings.identity_id:
        message = (f"{obj.get('id')} was created by {creator}; STIX 2.1 lets only its creator make new "
                   "versions or revoke it (delete it over TAXII instead)")
        if field_name:
            raise PublishInputError(field_name, message)
        raise ConflictError(message)


def _version_of(obj: dict[str, Any]) -> str | None:
    return obj.get("modified") or obj.get("created")


def _store_everywhere(db: Session, holdings: list[_Holding], obj: dict[str, Any], *, actor: str,
                      changed: bool) -> NewVersion:
    outcome = NewVersion(id=obj["id"], version=_version_of(obj) or "", revoked=obj.get("revoked") is True,
                         changed=changed)
    for holding in holdings:
        result = ingest(db, collection=holding.collection, objects=[obj], origin="analyst", added_by=actor,
                        audience=_audience_list(holding.audience))
        if result.failures:
            raise PublishInputError("body", result.failures[0].get("message", "the new version was refused"))
        outcome.places.append((_place(db, holding.collection), bool(result.stored_ids)))
    return outcome


# ---- GET /observables ------------------------------------------------------------------------

def lookup(db: Session, value: str, *, kind: str | None = None) -> dict[str, Any]:
    """Indicators whose pattern mentions the value, sightings of them, incidents linked to them.

    Scans the latest indicator bodies with LIKE (no index can serve '%...%'): the cost grows
    with the number of stored indicators; a side table of pattern values would make it a seek.
    """
    try:
        kind = observables.canonical_type(kind) if kind else None
    except observables.ObservableError as exc:
        raise PublishInputError("type", str(exc)) from None
    try:
        observable = observables.normalise(kind, value) if kind else observables.detect(value)
    except observables.ObservableError as exc:
        raise PublishInputError("value", str(exc)) from None
    probes = observables.needles(observable)
    OV = ObjectVersion
    rows = db.execute(
        select(OV.stix_id, OV.type, OV.version_text, OV.revoked, OV.body, Collection.alias)
        .join(Collection, Collection.pk == OV.collection_pk)
        .where(OV.type == "indicator", OV.is_latest.is_(True),
               or_(*(OV.body.icontains(observables.json_text(text), autoescape=True) for text, _ in probes)))
        .order_by(OV.date_added_us.desc())
        .limit(LOOKUP_LIMIT + 1)
    ).all()
    truncated = len(rows) > LOOKUP_LIMIT
    indicators: dict[str, dict[str, Any]] = {}
    for row in rows[:LOOKUP_LIMIT]:
        obj = orjson.loads(row.body)
        pattern = obj.get("pattern")
        # LIKE also hits names and descriptions; only what the pattern says counts.
        matched = sorted({how for text, how in probes
                          if isinstance(pattern, str) and text.lower() in pattern.lower()})
        if matched:
            entry = _group(indicators, row, obj)
            entry["matched"] = sorted(set(entry.get("matched") or []) | set(matched))
    sightings: dict[str, dict[str, Any]] = {}
    incidents: dict[str, dict[str, Any]] = {}
    if indicators:
        via: dict[str, set[str]] = {}
        for row in _referring(db, list(indicators), ("sighting", "relationship")):
            obj = orjson.loads(row.body)
            if row.type == "sighting":
                _group(sightings, row, obj)
                continue
            ends = (obj.get("source_ref"), obj.get("target_ref"))
            for mine, other in (ends, ends[::-1]):
                if mine in indicators and isinstance(other, str) and other.startswith("incident--"):
                    via.setdefault(other, set()).add(mine)
        if via:
            for row in db.execute(
                select(OV.stix_id, OV.type, OV.version_text, OV.revoked, OV.body, Collection.alias)
                .join(Collection, Collection.pk == OV.collection_pk)
                .where(OV.stix_id.in_(sorted(via)), OV.is_latest.is_(True))
            ):
                _group(incidents, row, orjson.loads(row.body))["via"] = sorted(via[row.stix_id])
    return {
        "value": observable.value, "type": observable.kind,
        "indicators": list(indicators.values()), "sightings": list(sightings.values()),
        "incidents": list(incidents.values()), "truncated": truncated,
    }


def _referring(db: Session, ids: list[str], types: tuple[str, ...]) -> list[Any]:
    """Latest versions of objects of `types` that reference any of `ids` (object_ref index)."""
    OV = ObjectVersion
    return db.execute(
        select(OV.stix_id, OV.type, OV.version_text, OV.revoked, OV.body, Collection.alias).distinct()
        .join(Collection, Collection.pk == OV.collection_pk)
        .join(ObjectRef, ObjectRef.object_version_pk == OV.pk)
        .where(ObjectRef.ref_id.in_(ids), OV.type.in_(types), OV.is_latest.is_(True))
    ).all()


def _group(into: dict[str, dict[str, Any]], row: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """One entry per object; it lists every collection and shows the newest version."""
    entry = into.get(row.stix_id)
    if entry is None:
        entry = into[row.stix_id] = {"id": row.stix_id, "type": row.type, "version": row.version_text,
                                     "revoked": row.revoked, "collections": [], "object": obj}
    elif (stix_version_key(row.version_text) or "") > (stix_version_key(entry["version"]) or ""):
        entry.update(version=row.version_text, revoked=row.revoked, object=obj)
    if row.alias not in entry["collections"]:
        entry["collections"].append(row.alias)
        entry["collections"].sort()
    return entry
