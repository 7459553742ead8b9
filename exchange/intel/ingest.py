"""Store a batch of STIX objects: validate each, keep the good, report the bad.

One call is one envelope; the caller's transaction makes it all-or-nothing at the storage
level, while per-object validation failures are reported, not raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from exchange import metrics
from exchange.database.core import plan_for_current_size
from exchange.errors import InvalidJsonError, InvalidStixError, PayloadTooLargeError
from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from exchange.intel.strictjson import canonical_text
from exchange.intel.timestamps import now_us, us_to_text
from exchange.intel.validation import StixMeta, validate_object
from policies.engine import references
from policies.tlp import ALIAS_IDS, level_of_marking, rank

ORIGINS = ("analyst", "partner", "feed")
_CHUNK = 500


@dataclass
class IngestResult:
    """TAXII status-details for every object of the batch, plus counts for callers."""

    successes: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    created: int = 0
    updated: int = 0  # of `created`, how many are new versions of objects already stored
    duplicates: int = 0
    stored_ids: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    meta: StixMeta
    body: str
    version: str
    refs: set[str]
    row: dict[str, Any] | None = None


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
    audience: Sequence[str] | None = None,
) -> IngestResult:
    """Store `objects` (validated here unless already prepared) in `collection`; exact duplicates
    count as successes."""
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}")
    batch = objects if isinstance(objects, PreparedBatch) else prepare(objects)
    result = IngestResult(failures=list(batch.failures))
    audience_text = f",{','.join(sorted(set(audience)))}," if audience else None
    valid = batch.valid
    if not valid:
        return result
    plan_for_current_size(db)

    # Serialise writers per collection: date_added must be handed out in commit order.
    high_water = db.execute(
        select(Collection.last_date_added_us).where(Collection.pk == collection.pk).with_for_update()
    ).scalar_one()
    stored = _stored_versions(db, collection.pk, {c.meta.stix_id for _, c in valid})

    next_us = max(now_us(), high_water + 1)
    new_rows: list[_Candidate] = []
    for obj, cand in valid:
        versions = stored.setdefault(cand.meta.stix_id, {})
        if not cand.version:
            # No modified/created (e.g. an SCO): the same content is the same object.
            same = next((v for v, row in versions.items() if row["body"] == cand.body), None)
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
        if versions:
            result.updated += 1
        date_added = next_us
        next_us += 1
        cand.row = {
            "collection_pk": collection.pk,
            "stix_id": cand.meta.stix_id,
            "type": cand.meta.type,
            "spec_version": cand.meta.spec_version,
            "version": cand.version,
            "version_text": cand.meta.modified or cand.meta.created or us_to_text(date_added),
            "date_added_us": date_added,
            "tlp_rank": rank(cand.meta.tlp) if cand.meta.tlp else None,
            "confidence": cand.meta.confidence,
            "revoked": cand.meta.revoked,
            "is_latest": False,
            "is_first": False,
            "origin": origin,
            "added_by": added_by,
            "audience": audience_text,
            "body": cand.body,
            "pk": None,
        }
        versions[cand.version] = cand.row
        new_rows.append(cand)
        result.successes.append(status_detail(obj) | {"version": cand.row["version_text"]})
        result.stored_ids.append(cand.meta.stix_id)

    if not new_rows:
        return result
    _set_version_flags(db, stored, {c.meta.stix_id for c in new_rows})
    rows = [c.row for c in new_rows]
    for row in rows:
        del row["pk"]
    for start in range(0, len(rows), _CHUNK):
        db.execute(insert(ObjectVersion), rows[start : start + _CHUNK])
    _store_refs(db, collection.pk, [c for c in new_rows if c.refs])
    db.execute(
        update(Collection).where(Collection.pk == collection.pk).values(last_date_added_us=next_us - 1)
    )
    result.created = len(rows)
    metrics.OBJECTS_INGESTED.inc(result.created, origin=origin)
    return result


def closure_refs(obj: dict[str, Any]) -> set[str]:
    """Ids a partner must be able to see before it may see `obj` (TLP markings are known to all)."""
    return {ref for ref in references(obj) if level_of_marking(ref) is None and ref not in ALIAS_IDS}


def _store_refs(db: Session, collection_pk: int, cands: list[_Candidate]) -> None:
    if not cands:
        return
    by_date = {c.row["date_added_us"]: c for c in cands if c.row is not None}
    stamps = sorted(by_date)
    links = []
    for start in range(0, len(stamps), _CHUNK):
        for pk, stamp in db.execute(
            select(ObjectVersion.pk, ObjectVersion.date_added_us).where(
                ObjectVersion.collection_pk == collection_pk,
                ObjectVersion.date_added_us.in_(stamps[start : start + _CHUNK]),
            )
        ):
            links += [{"object_version_pk": pk, "ref_id": ref} for ref in sorted(by_date[stamp].refs)]
    for start in range(0, len(links), _CHUNK):
        db.execute(insert(ObjectRef), links[start : start + _CHUNK])


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
            ).where(
                ObjectVersion.collection_pk == collection_pk,
                ObjectVersion.stix_id.in_(ids[start : start + _CHUNK]),
            )
        )
        for row in rows:
            found.setdefault(row.stix_id, {})[row.version] = dict(row._mapping)
    return found


def _set_version_flags(db: Session, stored: dict[str, dict[str, dict[str, Any]]], touched: set[str]) -> None:
    """Mark the first and latest version of each touched object, fixing stored rows too."""
    for stix_id in touched:
        versions = stored[stix_id]
        first, latest = min(versions), max(versions)
        for version, row in versions.items():
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
        _set_version_flags(db, stored, {stix_id})
