"""The STIX objects and the publishing step the outbound tests share."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from tests.conftest import TAXII

GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
T0 = "2026-01-01T00:00:00.000Z"


def sdo(kind: str, marking: str = GREEN, **props: Any) -> dict[str, Any]:
    """A STIX domain (or relationship) object of `kind` with a fresh id, marked `marking`."""
    return {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": T0,
        "modified": T0,
        "object_marking_refs": [marking],
        **props,
    }


def indicator(marking: str = GREEN, **extra: Any) -> dict[str, Any]:
    """An indicator for a fresh domain name."""
    return sdo(
        "indicator",
        marking,
        pattern=f"[domain-name:value = 'x{uuid.uuid4().hex[:8]}.example']",
        pattern_type="stix",
        valid_from="2026-01-01T00:00:00Z",
        **extra,
    )


def publish(http: httpx.Client, url: str, objs: list[dict[str, Any]]) -> None:
    """POST `objs` to the collection at `url` as staff; every one must be stored."""
    status = http.post(
        url + "objects/", content=orjson.dumps({"objects": objs}), headers={"Content-Type": TAXII}
    ).json()
    assert status["success_count"] == len(objs), status
