"""The public signing keys at /.well-known/jwks.json."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from exchange.context import KeyRingDep

router = APIRouter(tags=["signing"])

JWKS_MAX_AGE = 300


@router.get("/.well-known/jwks.json", summary="The exchange's public signing keys (current, next, retired)")
def jwks(keyring: KeyRingDep) -> JSONResponse:
    """The JWK Set partners verify signatures with; rotation pre-publishes the next key."""
    return JSONResponse(keyring.jwks(), headers={"Cache-Control": f"max-age={JWKS_MAX_AGE}"})
