"""date_added is kept as integer microseconds since the epoch; these convert it."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ASCII digits only (`\d` is any Unicode digit, and int() reads full-width ones), the whole text.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def now_us() -> int:
    return time.time_ns() // 1000


def us_to_text(us: int) -> str:
    """TAXII timestamp text with microsecond precision, e.g. 2026-11-23T20:24:21.123456Z."""
    seconds, micros = divmod(us, 1_000_000)
    t = time.gmtime(seconds)  # fields, not strftime("%Y"), which writes year 1 as "1" on Linux
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        f".{micros:06d}Z"
    )


def text_to_us(text: str) -> int:
    """Parse an RFC 3339 timestamp to microseconds; sub-microsecond digits are dropped.

    Raises ValueError with a readable message for anything that is not a real timestamp.
    """
    match = _RFC3339.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp such as 2026-01-31T12:00:00Z")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date and time: {exc}") from None
    if match.group(9):
        sign = 1 if match.group(9) == "+" else -1
        offset = (int(match.group(10)) * 60 + int(match.group(11))) * 60
        base = int(moment.timestamp() - sign * offset) * 1_000_000
    else:
        base = int((moment - _EPOCH).total_seconds()) * 1_000_000
    return base + int(fraction)


MAX_FRACTION_DIGITS = 9
_STIX_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?Z"
)


@functools.lru_cache(maxsize=16384)
def stix_version_key(value: str) -> str | None:
    """A STIX timestamp as fixed-width text (9 fractional digits) whose string order is time
    order, or None when it is not a real UTC timestamp."""
    match = _STIX_TIMESTAMP.fullmatch(value)
    # Versions are compared to the nanosecond; two that differ only further down would be one
    # version in the store, so more digits than that are refused rather than cut.
    if match is None or len(match[7] or "") > MAX_FRACTION_DIGITS:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return f"{value[:19]}.{(match[7] or '')[:9].ljust(9, '0')}Z"


def version_key(text: str) -> str:
    """Like stix_version_key, raising ValueError for anything that is not a timestamp."""
    key = stix_version_key(text)
    if key is None:
        raise ValueError(f"{text!r} is not a UTC timestamp such as 2026-01-31T12:00:00.000Z")
    return key
