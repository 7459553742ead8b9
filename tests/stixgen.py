"""Small generators of valid STIX 2.1 content for tests."""

from __future__ import annotations

import uuid
from typing import Any

TLP_GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"


def ts(n: int = 0) -> str:
    return f"2026-01-01T00:00:{n % 60:02d}.{n // 60:03d}Z"


def indicator(
    n: int = 0, *, stix_id: str | None = None, modified: str | None = None, **extra: Any
) -> dict[str, Any]:
    created = ts(0)
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id or f"indicator--{uuid.uuid4()}",
        "created": created,
        "modified": modified or created,
        "name": f"test indicator {n}",
        "pattern": f"[ipv4-addr:value = '10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}']",
        "pattern_type": "stix",
        "valid_from": created,
        "object_marking_refs": [TLP_GREEN],
        **extra,
    }


def envelope(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"objects": objects}
