"""Signing tests. Independent verifiers (jwcrypto, joserfc) shared by the test modules."""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any

from joserfc import jws as joserfc_jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet
from joserfc.registry import HeaderParameter
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

ISS = "identity--aeb752b6-4288-401d-b1df-705f70901e85"

# joserfc refuses header parameters outside its registry unless told about them; a partner
# using joserfc registers the three the exchange adds (iat, iss, aud), as here.
JOSERFC_REGISTRY = joserfc_jws.JWSRegistry(
    header_registry={
        "iat": HeaderParameter("Issued At", "int"),
        "iss": HeaderParameter("Issuer", "str"),
        "aud": HeaderParameter("Audience", "str"),
    },
    algorithms=["EdDSA"],
)


def jwcrypto_verify(token: str, payload: bytes, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify as a partner using jwcrypto would; raises on any failure."""
    keyset = jwcrypto_jwk.JWKSet.from_json(json.dumps(jwks))
    obj = jwcrypto_jws.JWS()
    obj.deserialize(token)
    obj.verify(keyset, detached_payload=payload)
    return obj.jose_header


def joserfc_verify(token: str, payload: bytes, jwks: dict[str, Any]) -> dict[str, Any]:
    """Verify as a partner using joserfc would; raises on any failure."""
    with warnings.catch_warnings():
        # joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name; DESIGN.md fixes it.
        warnings.simplefilter("ignore", SecurityWarning)
        obj = joserfc_jws.deserialize_compact(
            token, KeySet.import_key_set(jwks), registry=JOSERFC_REGISTRY, payload=payload
        )
    return dict(obj.headers())


def indicator(n: int, **extra: Any) -> dict[str, Any]:
    """A realistic STIX 2.1 indicator (about 500 bytes canonical)."""
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'ioc-{n}')}",
        "created": "2024-03-05T10:00:00.000Z",
        "modified": "2024-03-05T10:00:00.000Z",
        "name": f"C2 server {n}",
        "description": "Command and control server observed in a phishing campaign",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '198.51.{n // 256 % 256}.{n % 256}']",
        "pattern_type": "stix",
        "valid_from": "2024-03-05T10:00:00Z",
        "confidence": 80,
        "created_by_ref": ISS,
        "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
    }
    obj.update(extra)
    return obj
