"""Deterministic STIX ids: the same input always gives the same id, so re-publishing updates.

STIX 2.1 says SDO and SRO ids SHOULD be UUIDv4 and stix2-validator's strict mode insists, so
instead of UUIDv5 the 128 bits come from SHA-256 of a namespace and the input, with the version
and variant bits set as RFC 4122 requires for version 4. The result is stable and valid
where a v4 is expected. The inputs (a pattern, a value) are often guessable, so ids the exchange
publishes under are keyed with its secret (`id_key`): otherwise a partner could compute the id of
an indicator the CERT holds, post it and learn from the refusal that the CERT has it, or store
it first and own (or revoke) what the CERT later publishes.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

NAMESPACE = "national-cert-exchange"


def id_key(secret: bytes) -> bytes:
    """The key for ids only the holder of the exchange's secret can derive."""
    return hmac.new(secret, b"national-cert-exchange stix ids", hashlib.sha256).digest()


def deterministic_uuid(*parts: str, key: bytes | None = None) -> uuid.UUID:
    """A version-4-shaped UUID derived from `parts` (and `key`, when given)."""
    text = "\x1f".join((NAMESPACE, *parts)).encode()
    digest = hmac.new(key, text, hashlib.sha256).digest() if key else hashlib.sha256(text).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def deterministic_id(stix_type: str, *parts: str, key: bytes | None = None) -> str:
    """`<type>--<uuid>` for the same `parts` (and `key`) every time."""
    return f"{stix_type}--{deterministic_uuid(stix_type, *parts, key=key)}"
