"""/api/v1/objects/{stix_id}: one object across collections, where it came from and went, and the
sightings of it."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends
from sqlalchemy import select

from exchange.auth.deps import DbSession, require_staff
from exchange.context import StrictJsonRoute
from exchange.errors import NotFoundError
from exchange.intel import chain
from exchange.intel.models import Collection, ObjectRef, ObjectVersion
from exchange.intel.timestamps import us_to_text

router = APIRouter(
    prefix="/api/v1/objects",
    tags=["objects"],
    dependencies=[Depends(require_staff)],
    route_class=StrictJsonRoute,
)


def _row(row: Any, names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or {}
    return {
        "collection": row.alias,
        "version": row.version_text,
        "date_added": us_to_text(row.date_added_us),
        "origin": row.origin,
        "added_by": row.added_by,
        "from": chain.came_from(row, names),
        "object": orjson.loads(row.body),
    }


_COLUMNS = (
    ObjectVersion.pk,
    Collection.alias,
    ObjectVersion.version_text,
    ObjectVersion.date_added_us,
    ObjectVersion.origin,
    ObjectVersion.added_by,
    ObjectVersion.origin_partner_pk,
    ObjectVersion.originator_partner_pk,
    ObjectVersion.body,
)


@router.get("/{stix_id}")
def get_object(stix_id: str, db: DbSession) -> dict[str, Any]:
    """Every stored version of an object (all collections) and the latest sightings of it."""
    versions = db.execute(
        select(*_COLUMNS)
        .join(Collection, Collection.pk == ObjectVersion.collection_pk)
        .where(ObjectVersion.stix_id == stix_id)
        .order_by(ObjectVersion.version, Collection.alias)
    ).all()
    if not versions:
        raise NotFoundError(f"no object {stix_id!r} is stored")
    names = chain.partner_names(db)
    went = chain.received_by(db, [v.pk for v in versions])
    rows = [_row(v, names) | {"received_by": went.get(v.pk, [])} for v in versions]
    first = min(versions, key=lambda v: (v.date_added_us, v.pk))
    return {
        "id": stix_id,
        "came_from": chain.first_source(first, names),
        "versions": rows,
        "sightings": sightings_of(db, stix_id),
    }


@router.get("/{stix_id}/sightings")
def list_sightings(stix_id: str, db: DbSession) -> list[dict[str, Any]]:
    """Sightings (latest versions) that point at the object, e.g. posted by partners over TAXII."""
    return sightings_of(db, stix_id)


def sightings_of(db: Any, stix_id: str) -> list[dict[str, Any]]:
    """Latest versions of the sightings whose references include `stix_id`."""
    rows = db.execute(
        select(*_COLUMNS)
        .join(Collection, Collection.pk == ObjectVersion.collection_pk)
        .join(ObjectRef, ObjectRef.object_version_pk == ObjectVersion.pk)
        .where(
            ObjectRef.ref_id == stix_id, ObjectVersion.type == "sighting", ObjectVersion.is_latest.is_(True)
        )
        .order_by(ObjectVersion.date_added_us)
    ).all()
    return [_row(r) for r in rows]
