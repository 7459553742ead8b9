"""Analyst publishing: incidents from plain fields, raw bundles, revocation, new versions,
and "have we seen this value?"."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.config import Settings
from exchange.errors import ConflictError, InvalidStixError, NotFoundError
from exchange.incident.observables import ObservableError, detect, normalise
from exchange.incident.schemas import IncidentIn, Published, PublishedObject
from exchange.intel import service as intel_service
from exchange.intel.ids import deterministic_id, id_key
from exchange.intel.ingest import (
    NO_PARTNER,
    IngestResult,
    PreparedBatch,
    check_batch_size,
    ingest,
    prepare,
)
from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from exchange.intel.timestamps import now_us, text_to_us
from exchange.intel.validation import validate_object
from exchange.partner.models import Partner
from policies.tlp import TLP_2_0

INCIDENT_CORE = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
# STIX 2.1 lists no relationship between indicator and incident (`indicates` points at threats,
# validator check 202), so an indicator is `related-to` its incident.
INDICATOR_TO_INCIDENT = "related-to"
CRITICALITY = {"low": 25, "medium": 50, "high": 75, "critical": 100}
# The exchange's own property extension for what neither STIX nor incident-core carries.
EXTENSION_NAME = "national-cert-incident"


def _stamp(moment: datetime) -> str:
    # isoformat, not strftime("%Y"): that writes year 1 as "1" on Linux
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _after(previous: str | None) -> str:
    """Now, at millisecond precision, strictly after `previous`."""
    now_ms = now_us() // 1000
    if previous:
        now_ms = max(now_ms, text_to_us(previous) // 1000 + 1)
    return _stamp(datetime.fromtimestamp(now_ms / 1000, tz=UTC).replace(microsecond=(now_ms % 1000) * 1000))


def identity(settings: Settings) -> dict[str, Any]:
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": settings.identity_id,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": settings.identity_name,
        "identity_class": "organization",
    }


def extension_definition(settings: Settings) -> dict[str, Any]:
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": deterministic_id(
            "extension-definition", EXTENSION_NAME, key=id_key(settings.resolved_secret())
        ),
        "created_by_ref": settings.identity_id,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": EXTENSION_NAME,
        "description": "Severity and first/last seen times of incidents published by the national CERT",
        "schema": "https://github.com/national-cert/exchange/blob/main/README.md#publishing",
        "version": "1.0",
        "extension_types": ["property-extension"],
    }


def _collection(db: Session, settings: Settings, alias: str) -> Collection:
    root = intel_service.get_api_root(db, settings.api_root)
    found = (
        intel_service.get_collection(db, api_root_pk=root.pk, ref=alias, missing_ok=True) if root else None
    )
    if found is None:
        raise InvalidStixError(f"collection: no collection {alias!r}")
    return found


def _latest_row(db: Session, collection_pk: int, stix_id: str) -> Any:
    return db.execute(
        select(ObjectVersion.body, ObjectVersion.audience).where(
            ObjectVersion.collection_pk == collection_pk,
            ObjectVersion.stix_id == stix_id,
            ObjectVersion.is_latest.is_(True),
        )
    ).first()


def _latest(db: Session, collection_pk: int, stix_id: str) -> dict[str, Any] | None:
    row = _latest_row(db, collection_pk, stix_id)
    return orjson.loads(row.body) if row else None


def _same_but_modified(stored: dict[str, Any] | None, fresh: dict[str, Any]) -> bool:
    if stored is None:
        return False
    return {k: v for k, v in stored.items() if k != "modified"} == {
        k: v for k, v in fresh.items() if k != "modified"
    }


def _versioned(
    db: Session, coll: Collection, obj: dict[str, Any], now: str, audience: str | None
) -> dict[str, Any]:
    """Reuse the stored version when nothing but `modified` would change; else a newer version.

    A changed audience also makes a new version: the stored one keeps the audience it was
    stored with, so reusing it would silently keep the old (perhaps wider) audience.
    """
    row = _latest_row(db, coll.pk, obj["id"])
    stored = orjson.loads(row.body) if row else None
    candidate = dict(obj, modified=now, created=stored["created"] if stored else obj["created"])
    if _same_but_modified(stored, candidate) and row.audience == audience:
        return stored  # type: ignore[return-value]
    if stored is not None:
        candidate["modified"] = _after(stored["modified"])
    return candidate


def _store(
    db: Session,
    coll: Collection,
    objects: list[dict[str, Any]],
    *,
    actor: str,
    audience: list[str] | None = None,
) -> IngestResult:
    result = ingest(db, collection=coll, objects=objects, origin="analyst", added_by=actor, audience=audience)
    if result.conflicts:
        raise ConflictError(result.conflicts[0])
    if result.failures:
        first = result.failures[0]
        # The caller's transaction rolls back: nothing of this request is stored.
        raise InvalidStixError(f"{first['id'] or 'object'}: {first.get('message', 'refused')}")
    return result


def report_id(incident_id: str, *, key: bytes) -> str:
    """The id of the report that carries an incident to consumers that do not read `incident`,
    keyed like indicator ids: a partner that reads the incident cannot compute it and store it
    first (revoked, or as a placeholder that would make it the report's originator)."""
    return deterministic_id("report", incident_id, key=key)


def relationship_id(indicator_id: str, incident_id: str, *, key: bytes) -> str:
    """The id of the relationship from an indicator to its incident, keyed for the same reason."""
    return deterministic_id("relationship", indicator_id, INDICATOR_TO_INCIDENT, incident_id, key=key)


def _own_id(db: Session, coll: Collection, keyed: str, unkeyed: str) -> str:
    """`keyed`, unless the CERT published the object in `coll` under `unkeyed`, the id it derived
    before ids were keyed: then that object keeps getting the new versions (a second report or
    relationship would stand beside it). An unkeyed id that a partner or a feed stored first is
    not the CERT's (a partner could compute it) and is left to whoever stored it."""
    if keyed == unkeyed or _latest_row(db, coll.pk, keyed) is not None:
        return keyed
    rows = db.execute(
        select(
            ObjectVersion.collection_pk,
            ObjectVersion.origin,
            ObjectVersion.originator_partner_pk,
            ObjectVersion.date_added_us,
        ).where(ObjectVersion.stix_id == unkeyed)
    ).all()
    earliest = min(rows, key=lambda r: r.date_added_us, default=None)
    cert_held = (
        earliest is not None
        and earliest.origin == "analyst"
        and all(r.originator_partner_pk is None for r in rows)
        and any(r.collection_pk == coll.pk and r.origin == "analyst" for r in rows)
    )
    return unkeyed if cert_held else keyed


def incident_report_id(db: Session, coll: Collection, incident_id: str, *, key: bytes) -> str:
    """The id of the incident's report in `coll`: the one the CERT already publishes, else the keyed one."""
    return _own_id(db, coll, report_id(incident_id, key=key), deterministic_id("report", incident_id))


def cert_report_ids(db: Session, incident_id: str) -> list[str]:
    """The reports the CERT stored that list the incident (under a keyed or an earlier unkeyed id)."""
    return list(
        db.scalars(
            select(ObjectVersion.stix_id)
            .join(ObjectRef, ObjectRef.object_version_pk == ObjectVersion.pk)
            .where(
                ObjectRef.ref_id == incident_id,
                ObjectVersion.type == "report",
                ObjectVersion.origin == "analyst",
                ObjectVersion.originator_partner_pk.is_(None),
            )
            .distinct()
            .order_by(ObjectVersion.stix_id)
        )
    )


def report_labels(incident: dict[str, Any]) -> list[str]:
    """Severity and incident types as labels, which MISP imports as event tags."""
    extensions = incident.get("extensions", {})
    core = extensions.get(INCIDENT_CORE, {})
    own: dict[str, Any] = next(
        (e for k, e in extensions.items() if k != INCIDENT_CORE and "severity" in e), {}
    )
    labels = [f"incident-type:{kind}" for kind in core.get("incident_types", [])]
    if own.get("severity"):
        labels.append(f"severity:{own['severity']}")
    return labels


def _report(
    db: Session,
    coll: Collection,
    *,
    incident: dict[str, Any],
    members: list[dict[str, Any]],
    common: dict[str, Any],
    now: str,
    key: bytes,
) -> dict[str, Any]:
    """A report whose object_refs are the incident, its indicators and their relationships.

    MISP (through misp-stix) turns a report into an event and cannot read `incident`; OpenCTI
    makes it a container. Its title, description and labels repeat the incident's, so what
    the analyst published survives either import.
    """
    rid = incident_report_id(db, coll, incident["id"], key=key)
    stored = _latest(db, coll.pk, rid)
    report: dict[str, Any] = {
        "type": "report",
        "id": rid,
        "created": now,
        "modified": now,
        "name": incident["name"],
        "report_types": ["threat-report"],
        # The first publication stays the publication date, so an unchanged re-publish
        # reuses the stored report instead of making a version that differs only in time.
        "published": stored["published"] if stored else incident["created"],
        "object_refs": [incident["id"], *(o["id"] for o in members)],
        **common,
    }
    if incident.get("description"):
        report["description"] = incident["description"]
    labels = report_labels(incident)
    if labels:
        report["labels"] = labels
    return report


def publish_incident(db: Session, body: IncidentIn, *, actor: str, settings: Settings) -> Published:
    """Build the incident's STIX objects, store them, and say where each one is."""
    coll = _collection(db, settings, body.collection)
    if body.audience:
        known = set(db.scalars(select(Partner.slug).where(Partner.slug.in_(body.audience))))
        unknown = sorted(set(body.audience) - known)
        if unknown:
            raise InvalidStixError(f"audience: no partner {', '.join(map(repr, unknown))}")
    marking = TLP_2_0[body.tlp]
    now = _stamp(datetime.now(UTC))
    common: dict[str, Any] = {
        "spec_version": "2.1",
        "created_by_ref": settings.identity_id,
        "object_marking_refs": [marking["id"]],
    }
    if body.confidence is not None:
        common["confidence"] = body.confidence

    incident_id = body.id or f"incident--{uuid.uuid4()}"
    if not incident_id.startswith("incident--"):
        raise InvalidStixError(f"id: {incident_id!r} is not an incident id")
    ext_def = extension_definition(settings)
    own: dict[str, Any] = {"extension_type": "property-extension"}
    if body.severity:
        own["severity"] = body.severity
    if body.first_seen:
        own["first_seen"] = _stamp(body.first_seen)
    if body.last_seen:
        own["last_seen"] = _stamp(body.last_seen)
    core: dict[str, Any] = {
        "extension_type": "property-extension",
        "determination": "suspected",
        "investigation_status": "new",
    }
    if body.incident_types:
        core["incident_types"] = body.incident_types
    if body.severity:
        core["criticality"] = CRITICALITY[body.severity]
    incident = {
        "type": "incident",
        "id": incident_id,
        "created": now,
        "modified": now,
        "name": body.title,
        **common,
        "extensions": {INCIDENT_CORE: core, ext_def["id"]: own},
    }
    if body.description:
        incident["description"] = body.description

    ids_key = id_key(settings.resolved_secret())
    indicators, relationships = [], []
    for position, item in enumerate(body.observables):
        try:
            pattern = (
                item.pattern
                if item.pattern is not None
                else normalise(item.type or "", item.value or "").pattern
            )
        except ObservableError as exc:
            raise InvalidStixError(f"observables[{position}]: {exc}") from None
        name = item.name or (item.value.strip() if item.value else pattern)
        indicator = {
            "type": "indicator",
            "id": deterministic_id("indicator", pattern, key=ids_key),
            "created": now,
            "modified": now,
            "name": name,
            "description": f"Observed in: {body.title}",
            "indicator_types": ["malicious-activity"],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": _stamp(body.first_seen) if body.first_seen else now,
            **common,
        }
        try:
            validate_object(indicator)
        except InvalidStixError as exc:
            raise InvalidStixError(f"observables[{position}]: {exc.message}") from None
        indicators.append(indicator)
        relationships.append(
            {
                "type": "relationship",
                "created": now,
                "modified": now,
                "id": _own_id(
                    db,
                    coll,
                    relationship_id(indicator["id"], incident_id, key=ids_key),
                    deterministic_id("relationship", indicator["id"], INDICATOR_TO_INCIDENT, incident_id),
                ),
                "relationship_type": INDICATOR_TO_INCIDENT,
                "source_ref": indicator["id"],
                "target_ref": incident_id,
                **common,
            }
        )
    if body.id and _latest(db, coll.pk, incident_id) is None:
        raise NotFoundError(f"no incident {incident_id!r} in {coll.alias!r} to publish a new version of")
    objects = [identity(settings), ext_def, marking]
    audience_text = f",{','.join(sorted(set(body.audience)))}," if body.audience else None
    stored_incident, *members = (
        _versioned(db, coll, o, now, audience_text) for o in [incident, *indicators, *relationships]
    )
    report = _report(db, coll, incident=stored_incident, members=members, common=common, now=now, key=ids_key)
    objects += [stored_incident, *members, _versioned(db, coll, report, now, audience_text)]
    _store(db, coll, objects, actor=actor, audience=body.audience)
    audit.record(
        db,
        actor=actor,
        action="publish.incident",
        target=incident_id,
        details={
            "collection": coll.alias,
            "indicators": len(indicators),
            "tlp": body.tlp,
            "audience": body.audience,
        },
    )
    base = f"/taxii2/{settings.api_root}/collections/{coll.id}/objects/"
    return Published(
        incident=incident_id,
        collection=coll.alias,
        objects=[PublishedObject(id=o["id"], type=o["type"], url=f"{base}{o['id']}/") for o in objects],
    )


def prepare_bundle(bundle: Any, *, max_objects: int) -> PreparedBatch:
    """Check a bundle's shape and validate its objects (no database, so before any write lock)."""
    if (
        not isinstance(bundle, dict)
        or bundle.get("type") != "bundle"
        or not isinstance(bundle.get("objects"), list)
    ):
        raise InvalidStixError(
            'the body must be a STIX bundle: {"type": "bundle", "id": ..., "objects": [...]}'
        )
    bundle_id = bundle.get("id")
    if not isinstance(bundle_id, str) or not bundle_id.startswith("bundle--"):
        raise InvalidStixError("id: a bundle needs an id of the form bundle--<uuid>")
    if not bundle["objects"]:
        raise InvalidStixError("objects: the bundle is empty")
    check_batch_size(len(bundle["objects"]), max_objects)
    return prepare(bundle["objects"])


def publish_bundle(
    db: Session,
    bundle: Any,
    *,
    collection: str,
    actor: str,
    settings: Settings,
    prepared: PreparedBatch | None = None,
) -> dict[str, Any]:
    """Store a STIX bundle with TAXII POST's validation; good objects kept, bad ones reported."""
    if prepared is None:
        prepared = prepare_bundle(bundle, max_objects=settings.max_envelope_objects)
    bundle_id = bundle["id"]
    coll = _collection(db, settings, collection)
    result = ingest(db, collection=coll, objects=prepared, origin="analyst", added_by=actor)
    audit.record(
        db,
        actor=actor,
        action="publish.bundle",
        target=bundle_id,
        details={"collection": coll.alias, "new": result.created, "failures": len(result.failures)},
    )
    return {
        "collection": coll.alias,
        "total_count": len(bundle["objects"]),
        "success_count": len(result.successes),
        "failure_count": len(result.failures),
        "successes": result.successes,
        "failures": result.failures,
    }


def _holders(db: Session, stix_id: str, collection: str | None, settings: Settings) -> list[Collection]:
    query = (
        select(Collection)
        .join(ObjectVersion, ObjectVersion.collection_pk == Collection.pk)
        .where(ObjectVersion.stix_id == stix_id)
        .distinct()
    )
    if collection:
        query = query.where(Collection.alias == collection)
    found = list(db.scalars(query))
    if not found:
        raise NotFoundError(f"no object {stix_id!r}" + (f" in {collection!r}" if collection else ""))
    return found


def new_version(
    db: Session,
    stix_id: str,
    changes: dict[str, Any],
    *,
    actor: str,
    settings: Settings,
    collection: str | None = None,
    action: str = "publish.version",
) -> list[dict[str, str]]:
    """Store the next version of an object (changes merged over the latest) where it is held."""
    fixed = {"id", "type", "created", "spec_version", "modified"} & set(changes)
    if fixed:
        raise InvalidStixError(f"{', '.join(sorted(fixed))}: cannot be changed in a new version")
    stored_versions = []
    for coll in _holders(db, stix_id, collection, settings):
        row = _latest_row(db, coll.pk, stix_id)
        if row is None:
            continue
        latest = orjson.loads(row.body)
        # The new version goes to the same partners as the one it replaces, never to more: an
        # audience that names nobody (copies whose audiences do not overlap) stays nobody.
        audience = [slug for slug in (row.audience or "").split(",") if slug]
        if row.audience is not None and not audience:
            audience = list(NO_PARTNER)
        if "modified" not in latest:
            raise InvalidStixError(f"{stix_id}: objects without 'modified' cannot be versioned")
        if latest.get("revoked") is True:
            raise ConflictError(
                f"{stix_id} was revoked (version {latest['modified']}) in {coll.alias!r}; a revoked object "
                "cannot get new versions (STIX 2.1 section 3.6): publish a new object instead"
            )
        fresh = {k: v for k, v in (latest | changes).items() if v is not None}
        fresh["modified"] = _after(latest["modified"])
        follows = _report_follows(db, coll, fresh, key=id_key(settings.resolved_secret()))
        _store(db, coll, [fresh, *follows], actor=actor, audience=audience)
        stored_versions.append({"collection": coll.alias, "version": fresh["modified"]})
    audit.record(
        db,
        actor=actor,
        action=action,
        target=stix_id,
        details={"changes": sorted(changes), "collections": [v["collection"] for v in stored_versions]},
    )
    return stored_versions


def _report_follows(
    db: Session, coll: Collection, incident: dict[str, Any], *, key: bytes
) -> list[dict[str, Any]]:
    """The incident's report, renamed, re-described, re-labelled or revoked with it (if it has one)."""
    if incident.get("type") != "incident":
        return []
    report = _latest(db, coll.pk, incident_report_id(db, coll, incident["id"], key=key))
    if report is None:
        return []
    fresh = {k: v for k, v in report.items() if k not in ("description", "labels", "revoked")}
    fresh["name"] = incident["name"]
    for name, value in (
        ("description", incident.get("description")),
        ("labels", report_labels(incident)),
        ("revoked", incident.get("revoked")),
    ):
        if value:
            fresh[name] = value
    if fresh == report:
        return []
    fresh["modified"] = _after(report["modified"])
    return [fresh]


def revoke(
    db: Session, stix_id: str, *, actor: str, settings: Settings, collection: str | None = None
) -> list[dict[str, str]]:
    """Revoke an object: a new version with revoked true, which partners get on their next pull."""
    return new_version(
        db,
        stix_id,
        {"revoked": True},
        actor=actor,
        settings=settings,
        collection=collection,
        action="publish.revoke",
    )


def lookup(db: Session, value: str) -> dict[str, Any]:
    """Indicators that mention a value, the sightings of them and the incidents they indicate."""
    observable = detect(value)
    needle = observable.value if observable else value.strip()
    if not needle:
        raise InvalidStixError("value: give the value to look for")
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.execute(
        select(Collection.alias, ObjectVersion.stix_id, ObjectVersion.body)
        .join(Collection, Collection.pk == ObjectVersion.collection_pk)
        .where(
            ObjectVersion.type == "indicator",
            ObjectVersion.is_latest.is_(True),
            ObjectVersion.body.like(f"%'{escaped}'%", escape="\\"),
        )
    ).all()
    indicators = [{"collection": r.alias, "object": orjson.loads(r.body)} for r in rows]
    ids = sorted({r.stix_id for r in rows})
    related = (
        db.execute(
            select(Collection.alias, ObjectVersion.type, ObjectVersion.body)
            .join(Collection, Collection.pk == ObjectVersion.collection_pk)
            .join(ObjectRef, ObjectRef.object_version_pk == ObjectVersion.pk)
            .where(
                ObjectRef.ref_id.in_(ids),
                ObjectVersion.is_latest.is_(True),
                ObjectVersion.type.in_(("sighting", "relationship")),
            )
        ).all()
        if ids
        else []
    )
    sightings = [
        {"collection": r.alias, "object": orjson.loads(r.body)} for r in related if r.type == "sighting"
    ]
    incident_ids = sorted(
        {
            ref
            for r in related
            if r.type == "relationship"
            for ref in (orjson.loads(r.body).get("target_ref"), orjson.loads(r.body).get("source_ref"))
            if isinstance(ref, str) and ref.startswith("incident--")
        }
    )
    incidents = (
        [
            {"collection": r.alias, "object": orjson.loads(r.body)}
            for r in db.execute(
                select(Collection.alias, ObjectVersion.body)
                .join(Collection, Collection.pk == ObjectVersion.collection_pk)
                .where(ObjectVersion.stix_id.in_(incident_ids), ObjectVersion.is_latest.is_(True))
            )
        ]
        if incident_ids
        else []
    )
    return {
        "value": needle,
        "type": observable.type if observable else None,
        "seen": bool(indicators),
        "indicators": indicators,
        "sightings": sightings,
        "incidents": incidents,
    }
