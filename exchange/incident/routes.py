"""/api/v1 publishing endpoints for analysts (and administrators)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request

from exchange.auth.deps import DbSession, StaffUser, require_staff
from exchange.context import SessionsDep, SettingsDep, StrictJsonRoute
from exchange.errors import PayloadTooLargeError
from exchange.incident import service
from exchange.incident.schemas import IncidentIn, Published, RevokeIn
from exchange.intel.strictjson import loads_strict

router = APIRouter(
    prefix="/api/v1", tags=["publishing"], dependencies=[Depends(require_staff)], route_class=StrictJsonRoute
)


@router.post("/incidents", status_code=201, response_model=Published)
def publish_incident(body: IncidentIn, settings: SettingsDep, db: DbSession, user: StaffUser) -> Published:
    """Describe an incident in plain fields; the exchange builds, validates and stores the STIX."""
    return service.publish_incident(db, body, actor=user.credential_id, settings=settings)


@router.post(
    "/bundles",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def publish_bundle(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    user: StaffUser,
    collection: str = Query("incidents"),
) -> dict[str, Any]:
    """Publish any STIX 2.1 bundle with TAXII POST's strict validation (per-object results)."""
    raw = await request.body()
    if len(raw) > settings.max_content_length:
        raise PayloadTooLargeError(
            f"the body has {len(raw)} bytes; the most is {settings.max_content_length}"
        )
    bundle = loads_strict(raw, max_depth=settings.max_json_depth)
    from starlette.concurrency import run_in_threadpool

    from exchange.database.core import session_scope

    def store() -> dict[str, Any]:
        prepared = service.prepare_bundle(
            bundle, max_objects=settings.max_envelope_objects
        )  # the slow part, before the write lock
        with session_scope(sessions, write=True) as db:
            return service.publish_bundle(
                db,
                bundle,
                collection=collection,
                actor=user.credential_id,
                settings=settings,
                prepared=prepared,
            )

    return await run_in_threadpool(store)


@router.post("/objects/{stix_id}/revoke")
def revoke(
    stix_id: str,
    settings: SettingsDep,
    db: DbSession,
    user: StaffUser,
    body: RevokeIn | None = Body(None),
) -> dict[str, Any]:
    """Revoke an object (a new version with revoked: true) in every collection holding it, or in
    `collection` alone."""
    collection = body.collection if body is not None else None
    versions = service.revoke(db, stix_id, actor=user.credential_id, settings=settings, collection=collection)
    return {"id": stix_id, "revoked": versions}


@router.post("/objects/{stix_id}/versions")
def new_version(
    stix_id: str,
    settings: SettingsDep,
    db: DbSession,
    user: StaffUser,
    changes: dict[str, Any] = Body(...),
    collection: str | None = Query(None),
) -> dict[str, Any]:
    """Store a new version: the given properties over the latest one (null removes a property)."""
    versions = service.new_version(
        db,
        stix_id,
        changes,
        actor=user.credential_id,
        settings=settings,
        collection=collection,
    )
    return {"id": stix_id, "versions": versions}


@router.get("/observables")
def lookup(value: str, db: DbSession) -> dict[str, Any]:
    """Have we seen this value? Indicators mentioning it, sightings of them, incidents they indicate."""
    return service.lookup(db, value)
