"""Deterministic STIX ids: the same input always gives the same id, so re-publishing updates.

STIX 2.1 says SDO and SRO ids SHOULD be UUIDv4 and stix2-validator's strict mode insists, so
instead of UUIDv5 the 128 bits come from SHA-256 of a namespace and the input, with the version
and variant bits set as RFC 4122 requires for version 4. The result is stable, unguessable
without the input, and valid where a v4 is expected.
"""

from __future__ import annotations

import hashlib
import uuid

NAMESPACE = "national-cert-exchange"


def deterministic_uuid(*parts: str) -> uuid.UUID:
    """A version-4-shaped UUID derived from `parts`."""
    digest = hashlib.sha256("\x1f".join((NAMESPACE, *parts)).encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def deterministic_id(stix_type: str, *parts: str) -> str:
    """`<type>--<uuid>` for the same `parts` every time."""
    return f"{stix_type}--{deterministic_uuid(stix_type, *parts)}"
