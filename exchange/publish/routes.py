"""/api/v1 publishing for analysts and administrators: incidents, bundles, revocation,
new versions and "have we seen this value?"."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from exchange.auth.deps import DbSession, StaffUser
from exchange.config import Settings
from exchange.errors import PayloadTooLargeError
from exchange.intel.strictjson import loads_strict
from exchange.publish import service
from exchange.publish.schemas import (
    IncidentIn,
    IncidentPublished,
    LookupResult,
    PublishedObject,
    RevokeIn,
    StoredVersion,
    VersionResult,
)

router = APIRouter(prefix="/api/v1", tags=["publishing"])
_JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


async def _json_body(request: Request) -> Any:
    """The body parsed strictly (duplicate keys, I-JSON numbers, depth), as TAXII POST does."""
    settings: Settings = request.app.state.settings
    raw = await request.body()
    if len(raw) > settings.max_content_length:
        raise PayloadTooLargeError(f"the body has {len(raw)} bytes; at most {settings.max_content_length} are accepted")
    return loads_strict(raw, max_depth=settings.max_json_depth)


StrictJson = Annotated[Any, Depends(_json_body)]


def _taxii_url(request: Request, place: service.Place, stix_id: str) -> str:
    settings: Settings = request.app.state.settings
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return f"{base}/taxii2/{place.api_root}/collections/{place.collection_id}/objects/{stix_id}/"


def _version_result(request: Request, outcome: service.NewVersion) -> VersionResult:
    return VersionResult(
        id=outcome.id, version=outcome.version, revoked=outcome.revoked, changed=outcome.changed,
        collections=[StoredVersion(collection=p.collection_alias, collection_id=p.collection_id,
                                   status="new" if new else "unchanged", url=_taxii_url(request, p, outcome.id))
                     for p, new in outcome.places],
    )


@router.post("/incidents", status_code=201, response_model=IncidentPublished)
def publish_incident(body: IncidentIn, request: Request, db: DbSession, user: StaffUser) -> IncidentPublished:
    """Publish an incident described in plain fields, with one indicator per observable.

    Re-publishing an observable updates its indicator (same id) instead of duplicating it; give
    `id` to publish a new version of an incident. Bad input is a 422 and nothing is stored.
    """
    published = service.publish_incident(db, body, settings=request.app.state.settings, actor=user.credential_id)
    return IncidentPublished(
        incident=published.incident_id, collection=published.place.collection_alias,
        collection_id=published.place.collection_id,
        objects=[PublishedObject(id=o.id, type=o.type, version=o.version, status="new" if o.new else "unchanged",
                                 url=_taxii_url(request, published.place, o.id))
                 for o in published.objects],
    )


@router.post("/bundles", openapi_extra=_JSON_BODY)
def publish_bundle(request: Request, db: DbSession, user: StaffUser, bundle: StrictJson,
                   collection: str = Query("incidents", description="collection alias or id"),
                   audience: list[str] = Query([], description="partner slugs to narrow the objects to")
                   ) -> dict[str, Any]:
    """Publish a STIX 2.1 bundle with TAXII POST's validation; the answer is a TAXII status
    resource (also readable at /taxii2/<api-root>/status/<id>/): good objects are kept."""
    return service.publish_bundle(db, bundle, collection=collection, audience=audience,
                                  settings=request.app.state.settings, actor=user.credential_id)


@router.post("/objects/{stix_id}/revoke", response_model=VersionResult)
def revoke(stix_id: str, request: Request, db: DbSession, user: StaffUser,
           body: RevokeIn | None = None) -> VersionResult:
    """Store a version with revoked: true (modified = now) in every collection holding the object,
    or only in `collection`."""
    outcome = service.revoke(db, stix_id, settings=request.app.state.settings, actor=user.credential_id,
                             collection=body.collection if body else None)
    return _version_result(request, outcome)


@router.post("/objects/{stix_id}/versions", response_model=VersionResult, openapi_extra=_JSON_BODY)
def new_version(stix_id: str, request: Request, db: DbSession, user: StaffUser, changes: StrictJson,
                collection: str | None = Query(None, description="only this collection (alias or id)")
                ) -> VersionResult:
    """Store a new version (modified = now): the JSON body's properties over the latest version,
    null removing one; id, type, spec_version, created and modified cannot be given."""
    outcome = service.new_version(db, stix_id, changes, settings=request.app.state.settings,
                                  actor=user.credential_id, collection=collection)
    return _version_result(request, outcome)


@router.get("/observables", response_model=LookupResult)
def lookup(db: DbSession, user: StaffUser,
           value: str = Query(min_length=1, max_length=8192, description="an IP, CIDR, domain, URL, email or hash"),
           type: str | None = Query(None, description="the value's type when guessing is not wanted")  # noqa: A002
           ) -> dict[str, Any]:
    """Have we seen this value? Indicators whose pattern mentions it, sightings of those
    indicators and incidents linked to them, across collections."""
    return service.lookup(db, value, kind=type)
