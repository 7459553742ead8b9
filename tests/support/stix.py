"""The one builder of STIX 2.1 test content: markings, timestamps, objects, envelopes, publishing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from tests.support.taxii import TAXII

CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
# The TLP 2.0 marking definitions by level name, as agreements spell the levels.
TLP = {
    "clear": CLEAR,
    "green": GREEN,
    "amber": AMBER,
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": RED,
}
T0 = "2026-01-01T00:00:00.000Z"


def ts(n: int = 0) -> str:
    """A distinct timestamp for each `n` (milliseconds after T0's minute), for versions."""
    return f"2026-01-01T00:00:{n % 60:02d}.{n // 60:03d}Z"


def sdo(kind: str, marking: str | None = GREEN, **props: Any) -> dict[str, Any]:
    """A STIX domain (or relationship) object of `kind` with a fresh id, marked `marking` (None: unmarked).

    `props` are added last, so they may also replace the id or the timestamps."""
    obj: dict[str, Any] = {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": T0,
        "modified": T0,
    }
    if marking is not None:
        obj["object_marking_refs"] = [marking]
    return {**obj, **props}


def indicator(
    n: int | None = None,
    *,
    marking: str | None = GREEN,
    stix_id: str | None = None,
    modified: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An indicator: for `n`, on the address 10.x.y.z that `n` numbers; else on a fresh domain name."""
    pattern = (
        f"[domain-name:value = 'x{uuid.uuid4().hex[:8]}.example']"
        if n is None
        else f"[ipv4-addr:value = '10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}']"
    )
    obj = sdo(
        "indicator",
        marking,
        name=f"test indicator {0 if n is None else n}",
        pattern=pattern,
        pattern_type="stix",
        valid_from=T0,
    )
    if stix_id is not None:
        obj["id"] = stix_id
    if modified is not None:
        obj["modified"] = modified
    return {**obj, **extra}


def indicator_on(ip: str, marking: str | None = GREEN, **props: Any) -> dict[str, Any]:
    """An indicator on the IPv4 address `ip`."""
    return sdo(
        "indicator",
        marking,
        pattern=f"[ipv4-addr:value = '{ip}']",
        pattern_type="stix",
        valid_from=T0,
        **props,
    )


def envelope(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A TAXII envelope carrying `objects`."""
    return {"objects": objects}


def publish(http: httpx.Client, url: str, objs: list[dict[str, Any]]) -> None:
    """POST `objs` to the collection at `url` as staff; every one must be stored."""
    status = http.post(
        url + "objects/", content=orjson.dumps(envelope(objs)), headers={"Content-Type": TAXII}
    ).json()
    assert status["success_count"] == len(objs), status


# The SHA-256 the incident body reports (upper case there: the exchange normalises it).
SHA256 = "4bac27393bdd9777ce02453256c5577cd02275510b2227f473d03f533924f877"


def incident_body(coll: str, **extra: Any) -> dict[str, Any]:
    """A `POST /api/v1/incidents` body publishing to the collection `coll`, with one observable of each kind."""
    return {
        "title": "Phishing wave against bank customers",
        "description": "Credential phishing.",
        "incident_types": ["phishing"],
        "severity": "high",
        "first_seen": "2026-11-20T08:00:00Z",
        "tlp": "amber",
        "collection": coll,
        "confidence": 80,
        "observables": [
            {"type": "domain-name", "value": "Login-Secure-Bank.TOP."},
            {"type": "ipv4-addr", "value": "45.13.22.7"},
            {"type": "file:hashes.'SHA-256'", "value": SHA256.upper()},
            {"pattern": "[url:value = 'http://x.top/a']", "name": "landing page"},
        ],
        **extra,
    }
