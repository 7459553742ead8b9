"""/api/v1/exports: a signed STIX bundle exactly as one partner's agreement allows."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from exchange.auth.deps import StaffUser, WriteDbSession
from exchange.context import KeyRingDep, SettingsDep, StrictJsonRoute
from exchange.errors import BadRequestError
from exchange.export.service import export_bundle, signer
from exchange.intel.timestamps import text_to_us

router = APIRouter(prefix="/api/v1/exports", tags=["exports"], route_class=StrictJsonRoute)
STIX_MEDIA = "application/stix+json;version=2.1"
JWS_HEADER = "X-Exchange-JWS"


@router.get("/{collection}", response_class=Response)
def export(
    collection: str,
    settings: SettingsDep,
    keyring: KeyRingDep,
    db: WriteDbSession,
    user: StaffUser,
    partner: str = Query(description="the partner whose agreement decides what goes in"),
    added_after: str | None = Query(None, description="only objects added after this timestamp"),
    signature: Literal["embedded", "detached"] = Query(
        "embedded",
        description="embedded: in the bundle property x_exchange_jws (the default, as in TAXII pages); "
        "detached: only in the X-Exchange-JWS header, leaving a bundle that passes strict STIX validation",
    ),
) -> Response:
    """The latest versions the partner may receive now, signed (member `x_exchange_jws` and header)."""
    after = None
    if added_after is not None:
        try:
            after = text_to_us(added_after)
        except ValueError as exc:
            raise BadRequestError(f"added_after: {exc}") from None
    result = export_bundle(
        db,
        partner_slug=partner,
        collection_ref=collection,
        api_root=settings.api_root,
        actor=user.credential_id,
        exchange_identity=settings.identity_id,
        added_after_us=after,
        sign=signer(keyring, settings.identity_id),
    )
    headers = {"X-Exchange-Objects": str(result.count)}
    if result.signature:
        # The same detached JWS either way: it covers the bundle without the member.
        headers[JWS_HEADER] = result.signature
    body = result.unsigned_bytes if signature == "detached" else result.bundle_bytes
    return Response(body, media_type=STIX_MEDIA, headers=headers)
