"""Turn feed records into STIX the exchange stores: IoC values into indicators with
deterministic ids, and feed defaults (TLP, confidence) onto objects that lack them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from exchange.incident.observables import Observable, ObservableError, detect, normalise
from exchange.intel.ids import deterministic_id
from policies.tlp import TLP_2_0, object_tlp

# Types that carry `confidence` (STIX 2.1 section 3.2: SDOs and SROs).
SDO_SRO_TYPES = frozenset(
    {
        "attack-pattern",
        "campaign",
        "course-of-action",
        "grouping",
        "identity",
        "incident",
        "indicator",
        "infrastructure",
        "intrusion-set",
        "location",
        "malware",
        "malware-analysis",
        "note",
        "observed-data",
        "opinion",
        "report",
        "threat-actor",
        "tool",
        "vulnerability",
        "relationship",
        "sighting",
    }
)
# Properties that do not make an indicator a new version when only they differ.
_VOLATILE = ("created", "modified")
_SIMPLE_PATTERN = re.compile(r"^\[([a-z0-9-]+):(value|hashes\.'?[A-Za-z0-9-]+'?) = '((?:[^'\\]|\\.)*)'\]$")


def stix_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as STIX timestamps are usually written."""
    # isoformat, not strftime("%Y"): that writes year 1 as "1" on Linux
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def observable_of(value: str, kind: str | None) -> Observable:
    """The normalised observable for a list value: of the given kind, else detected."""
    if kind:
        return normalise(kind, value)
    found = detect(value)
    if found is None:
        raise ObservableError(
            f"{value.strip()[:200]!r} is not an IP address, CIDR block, domain, URL or hash"
        )
    return found


def indicator_id(feed_name: str, observable: Observable, *, key: bytes | None = None) -> str:
    """The same value from the same feed is always the same indicator (keyed: see exchange.intel.ids)."""
    return deterministic_id("indicator", "feed", feed_name, observable.pattern, key=key)


def indicator(
    observable: Observable,
    *,
    feed_name: str,
    tlp: str,
    confidence: int | None,
    description: str | None = None,
    labels: tuple[str, ...] = (),
    first_seen: str | None = None,
    stored: dict[str, Any] | None = None,
    now: datetime,
    id_key: bytes | None = None,
) -> dict[str, Any] | None:
    """The indicator to store for `observable`, or None when `stored` (its latest version) says the same."""
    body: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": indicator_id(feed_name, observable, key=id_key),
        "name": observable.value,
        "pattern": observable.pattern,
        "pattern_type": "stix",
        "indicator_types": ["malicious-activity"],
        "valid_from": first_seen or (stored or {}).get("valid_from") or stix_time(now),
        "object_marking_refs": [TLP_2_0[tlp]["id"]],
        "x_exchange_feed": feed_name,
    }
    if description:
        body["description"] = description
    if labels:
        body["labels"] = sorted(set(labels))
    if confidence is not None:
        body["confidence"] = confidence
    if stored is None:
        stamp = stix_time(now)
        return {**body, "created": stamp, "modified": stamp}
    if {k: v for k, v in stored.items() if k not in _VOLATILE} == body:
        return None
    previous = parse_time(stored["modified"])
    modified = max(now, previous + timedelta(milliseconds=1))
    return {**body, "created": stored["created"], "modified": stix_time(modified)}


def apply_defaults(obj: dict[str, Any], *, tlp: str, confidence: int | None) -> dict[str, Any]:
    """The feed's TLP on objects with no TLP marking, its confidence on SDOs/SROs without one."""
    kind = obj.get("type")
    if kind in ("marking-definition", "extension-definition", "language-content", "bundle"):
        return obj
    changed = dict(obj)
    if object_tlp(obj) is None:
        refs = obj.get("object_marking_refs")
        changed["object_marking_refs"] = [*(refs if isinstance(refs, list) else []), TLP_2_0[tlp]["id"]]
    if confidence is not None and kind in SDO_SRO_TYPES and "confidence" not in obj:
        changed["confidence"] = confidence
    return changed


def checked_value(obj: dict[str, Any]) -> str | None:
    """The one value a warninglist can judge: a simple indicator pattern's literal or an SCO's value."""
    kind = obj.get("type")
    if kind == "indicator" and obj.get("pattern_type") == "stix" and isinstance(obj.get("pattern"), str):
        match = _SIMPLE_PATTERN.match(obj["pattern"].strip())
        if match:
            return match.group(3).replace("\\'", "'").replace("\\\\", "\\")
        return None
    if kind in ("ipv4-addr", "ipv6-addr", "domain-name", "url") and isinstance(obj.get("value"), str):
        value: str = obj["value"]
        return value
    return None
