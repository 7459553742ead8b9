"""Parse and validate TAXII 2.1 query parameters (section 3.6) into an ObjectFilter."""

from __future__ import annotations

import re
from typing import Any

from werkzeug.datastructures import MultiDict

from exchange.errors import BadRequestError
from exchange.intel.query import VERSION_KEYWORDS, ObjectFilter
from exchange.intel.timestamps import text_to_us, version_key

_TYPE = re.compile(r"[a-z0-9][a-z0-9-]{1,248}[a-z0-9]")
_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,248}[a-z0-9]--[0-9a-fA-F-]{36}")
_SPEC_VERSION = re.compile(r"[0-9]\.[0-9]")
_LIMIT = re.compile(r"[0-9]+")
FILTER_KEYS = ("added_after", "match[id]", "match[type]", "match[version]", "match[spec_version]")
# Each value becomes an SQL parameter and a part of every `next` cursor: a page's worth is
# plenty for a client, and thousands made SQLite and PostgreSQL statements fail.
MAX_LIST_VALUES = 1000


def _values(args: MultiDict[str, str], key: str) -> list[str] | None:
    raw = _single(args, key)
    if raw is None:
        return None
    count = raw.count(",") + 1
    if count > MAX_LIST_VALUES:
        raise BadRequestError(f"'{key}' has {count} values; give at most {MAX_LIST_VALUES} per request")
    values = [v.strip() for v in raw.split(",")]
    if any(not v for v in values):
        raise BadRequestError(f"'{key}' has an empty value")
    if len(set(values)) != len(values):
        raise BadRequestError(f"'{key}' names the same value twice")
    return sorted(values)


def _single(
    args: MultiDict[str, str], key: str, *, hint: str = "give it once, with comma-separated values"
) -> str | None:
    """TAXII 2.1 section 3.4: a parameter MUST NOT occur more than once in a request."""
    raw = args.getlist(key)
    if len(raw) > 1:
        raise BadRequestError(f"'{key}' occurs {len(raw)} times; {hint}")
    return raw[0] if raw else None


def check_paging(args: MultiDict[str, str]) -> None:
    """`limit` and `next` once each (section 3.4, as every other parameter), and `limit` a whole
    number in ASCII digits: Python's int() also reads '+5', '5_0' and other scripts' digits."""
    _single(args, "next", hint="give it once")
    limit = _single(args, "limit", hint="give it once")
    if limit is not None and not _LIMIT.fullmatch(limit):
        raise BadRequestError(f"limit: {limit[:40]!r} is not a whole number of objects such as 1000")


def normalised_filters(
    args: MultiDict[str, str], *, allowed: tuple[str, ...] = FILTER_KEYS
) -> dict[str, Any]:
    """The filters the request names, validated and in canonical form (for cursors too)."""
    out: dict[str, Any] = {}
    text = _single(args, "added_after") if "added_after" in allowed else None
    if text is not None:
        if not text.endswith(("Z", "z")):
            raise BadRequestError(f"added_after: {text!r} must be a UTC timestamp ending in Z")
        try:
            out["added_after"] = text_to_us(text)
        except ValueError as exc:
            raise BadRequestError(f"added_after: {exc}") from None
    for key, pattern, what in (
        ("match[id]", _ID, "a STIX id such as indicator--<uuid>"),
        ("match[type]", _TYPE, "a STIX type such as indicator"),
        ("match[spec_version]", _SPEC_VERSION, "a spec version such as 2.1"),
    ):
        if key not in allowed:
            continue
        values = _values(args, key)
        if values is None:
            continue
        for value in values:
            if not pattern.fullmatch(value):
                raise BadRequestError(f"{key}: {value!r} is not {what}")
        out[key] = [v.lower() for v in values] if key == "match[id]" else values
    if "match[version]" in allowed:
        values = _values(args, "match[version]")
        if values is not None:
            keys = []
            for value in values:
                if value in VERSION_KEYWORDS:
                    keys.append(value)
                    continue
                try:
                    keys.append(version_key(value))
                except ValueError:
                    raise BadRequestError(
                        f"match[version]: {value!r} is not 'last', 'first', 'all' or a timestamp"
                    ) from None
            if "all" in keys and len(keys) > 1:
                raise BadRequestError("match[version]: 'all' cannot be combined with other values")
            if len(set(keys)) != len(keys):
                raise BadRequestError("match[version] names the same version twice")
            out["match[version]"] = sorted(keys)
    return out


def to_object_filter(filters: dict[str, Any], *, default_versions: tuple[str, ...]) -> ObjectFilter:
    """An ObjectFilter for the store from normalised filters."""
    return ObjectFilter(
        added_after_us=filters.get("added_after"),
        ids=tuple(filters.get("match[id]", ())),
        types=tuple(filters.get("match[type]", ())),
        versions=tuple(filters.get("match[version]", default_versions)),
        spec_versions=tuple(filters.get("match[spec_version]", ())),
    )
