"""Durations as agreements spell them: "24h", "1h30m", "2w", ISO 8601 "PT24H" / "P7D", or seconds.

Pure module: standard library only. Whole seconds only; months and years are refused because
they have no fixed length (an embargo must mean the same thing in February and in March).
At most MAX_DURATION: a longer feed or push interval put the scheduler's next run beyond what a
datetime holds, and a longer embargo beyond what the database's integers hold.
"""

from __future__ import annotations

import re
from datetime import timedelta

# Compact form: units in decreasing order, each at most once ("1h30m", not "30m1h" or "1h1h").
_COMPACT = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_ISO = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.ASCII)
_ISO_CALENDAR = re.compile(r"P\d+[YM]", re.ASCII)
_UNIT_SECONDS = (7 * 86400, 86400, 3600, 60, 1)  # w, d, h, m, s
MAX_DURATION = timedelta(days=365)
_EXPECTED = 'expected e.g. "30m", "24h", "1h30m", "7d", "2w", "PT24H", "P7D" or a number of seconds'


def parse_duration(text: str | int | timedelta, *, maximum: timedelta | None = MAX_DURATION) -> timedelta:
    """A non-negative duration from agreement text, at most `maximum` (None: any that a
    timedelta holds); ValueError says what is wrong."""
    td = _parse(text)
    if maximum is not None and td > maximum:
        raise ValueError(f"duration {text!r} is longer than the maximum of {format_duration(maximum)}")
    return td


def _parse(text: str | int | timedelta) -> timedelta:
    if isinstance(text, timedelta):
        return _checked(text, text)
    if isinstance(text, bool):
        raise ValueError(f"a duration cannot be {text!r}; {_EXPECTED}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"negative duration {text!r}: durations must not be negative")
        return _seconds(text, text)
    if not isinstance(text, str):
        raise ValueError(f"a duration must be text or whole seconds, not {type(text).__name__}; {_EXPECTED}")
    raw = text.strip()
    if not raw:
        raise ValueError(f"empty duration; {_EXPECTED}")
    if raw.startswith("-"):
        raise ValueError(f"negative duration {text!r}: durations must not be negative")
    if re.fullmatch(r"[0-9]+", raw):
        return _seconds(int(raw), text)
    match = _COMPACT.fullmatch(raw)
    if match and any(match.groups()):
        return _from_parts(match.groups(), text)
    upper = raw.upper()
    match = _ISO.fullmatch(upper)
    if match and any(match.groups()) and not upper.endswith("T"):
        return _from_parts(match.groups(), text)
    if _ISO_CALENDAR.match(upper):
        raise ValueError(
            f"duration {text!r} uses months or years, which have no fixed length; use days or weeks"
        )
    if re.search(r"[0-9][.,][0-9]", raw):
        raise ValueError(f'duration {text!r} has a fraction; use whole units such as "90m"')
    unit = re.search(r"[0-9]+([a-zA-Z]+)", raw)
    if unit and unit.group(1) not in ("w", "d", "h", "m", "s"):
        raise ValueError(f"unknown unit {unit.group(1)!r} in duration {text!r}; units are w, d, h, m, s")
    raise ValueError(f"cannot read duration {text!r}; {_EXPECTED} (units largest first, each once)")


def format_duration(td: timedelta) -> str:
    """The compact text of a duration, e.g. "1d12h"; parse_duration reads it back exactly."""
    if not isinstance(td, timedelta):
        raise ValueError(f"not a duration: {td!r}")
    if td < timedelta(0):
        raise ValueError(f"negative duration {td}: durations must not be negative")
    if td.microseconds:
        raise ValueError(f"duration {td} has a fraction of a second; only whole seconds are written")
    total = td.days * 86400 + td.seconds
    if total == 0:
        return "0s"
    out = []
    for unit, size in zip("dhms", _UNIT_SECONDS[1:], strict=True):
        count, total = divmod(total, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _from_parts(groups: tuple[str | None, ...], text: object) -> timedelta:
    total = sum(int(value) * size for value, size in zip(groups, _UNIT_SECONDS, strict=True) if value)
    return _seconds(total, text)


def _seconds(total: int, text: object) -> timedelta:
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def _checked(td: timedelta, text: object) -> timedelta:
    if td < timedelta(0):
        raise ValueError(f"negative duration {text!r}: durations must not be negative")
    if td.microseconds:
        raise ValueError(f"duration {text!r} has a fraction of a second; use whole seconds")
    return td
