"""The public signing keys at /.well-known/jwks.json."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["signing"])

JWKS_MAX_AGE = 300


@router.get("/.well-known/jwks.json", summary="The exchange's public signing keys (current, next, retired)")
def jwks(request: Request) -> JSONResponse:
    """The JWK Set partners verify signatures with; rotation pre-publishes the next key."""
    keyring = request.app.state.keyring
    return JSONResponse(keyring.jwks(), headers={"Cache-Control": f"max-age={JWKS_MAX_AGE}"})
