"""Strict JSON for ingest: I-JSON (RFC 7493) values only, no duplicate keys, bounded nesting.

RFC 8785 canonical text, which the store keeps and signatures cover, can only represent what
I-JSON allows, so anything else is refused at the door with a message naming the problem.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

from exchange.errors import InvalidJsonError

_MAX_EXACT_INT = 2**53 - 1
_INFINITIES = (float("inf"), float("-inf"))
# The depth pre-scan keeps only quotes and brackets, byte-wise; UTF-8 multi-byte sequences never
# contain ASCII bytes, so this is safe before the UTF-8 check.
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_QUOTED = re.compile(rb'"[^"]*"')
_ESCAPE = re.compile(  # one JSON escape; a high surrogate takes its low partner with it
    r"\\(?:u(?P<high>[dD][89abAB][0-9a-fA-F]{2})(?P<low>\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    r"|u(?P<lone_low>[dD][c-fC-F][0-9a-fA-F]{2})|.)",
    re.S,
)


def loads_strict(data: bytes | str, *, max_depth: int = 64) -> Any:
    """Parse UTF-8 JSON, refusing anything I-JSON or RFC 8785 cannot carry."""
    raw, text = _bytes_and_text(data)
    if _nested_deeper_than(raw, max_depth):
        raise InvalidJsonError(f"JSON is nested deeper than {max_depth} levels")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_int=_exact_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise InvalidJsonError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except RecursionError:  # only when malformed input fooled the pre-scan
        raise InvalidJsonError(f"JSON is nested deeper than {max_depth} levels") from None
    if b"\\ud" in raw or b"\\uD" in raw:
        _refuse_lone_surrogate_escapes(text)
    return value


def canonical_text(obj: Any) -> str:
    """RFC 8785 (JCS) canonical JSON text of a parsed JSON value."""
    try:
        return rfc8785.dumps(obj).decode("utf-8")
    except rfc8785.CanonicalizationError as exc:
        raise InvalidJsonError(f"cannot canonicalise as RFC 8785 JSON: {exc}") from None
    except RecursionError:
        raise InvalidJsonError("cannot canonicalise as RFC 8785 JSON: nested too deeply") from None


def _bytes_and_text(data: bytes | str) -> tuple[bytes, str]:
    if isinstance(data, str):
        try:
            return data.encode("utf-8"), data
        except UnicodeEncodeError as exc:
            raise InvalidJsonError(f"lone UTF-16 surrogate at char {exc.start}") from None
    raw = bytes(data)
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJsonError(f"invalid UTF-8 at byte {exc.start}: {exc.reason}") from None


def _nested_deeper_than(raw: bytes, max_depth: int) -> bool:
    """Linear scan of the brackets outside strings; never recurses."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    if b"\\" in raw:  # drop escaped backslashes, then escaped quotes, so quotes pair up
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Adjacent quotes never enclose a bracket, and dropping a pair keeps every later
    # bracket's inside/outside parity, so remove them before the (slower) regex.
    skeleton = _QUOTED.sub(b"", raw.translate(None, _NOT_STRUCTURE).replace(b'""', b""))
    depth = 0
    for byte in skeleton:
        if byte == 0x5B or byte == 0x7B:  # [ {
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def duplicate_key(pairs: list[tuple[str, Any]]) -> str | None:
    """The first name a JSON object's `pairs` (as json's object_pairs_hook gets them) repeat;
    callers ask only once `dict(pairs)` came out shorter than `pairs`."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise InvalidJsonError(f"duplicate key {duplicate_key(pairs)!r} in a JSON object")
    return obj


def _exact_int(literal: str) -> int:
    # More than 16 digits is always out of range; checking length first also avoids
    # int() on a megabyte of digits.
    if len(literal.lstrip("-")) > 16 or abs(int(literal)) > _MAX_EXACT_INT:
        shown = literal if len(literal) <= 40 else literal[:40] + "..."
        raise InvalidJsonError(f"integer {shown} is outside I-JSON's exact range (magnitude at most 2**53-1)")
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    shown = literal if len(literal) <= 40 else literal[:40] + "..."
    if value in _INFINITIES:
        raise InvalidJsonError(f"number {shown} overflows an IEEE 754 double")
    # RFC 8785 writes these doubles as plain integers (e.g. 1e20 -> 100000000000000000000), which
    # would then be integers outside the exact range: refuse them so stored text re-parses.
    if _MAX_EXACT_INT < abs(value) < 1e21:
        raise InvalidJsonError(
            f"number {shown} would be canonicalised as an integer outside I-JSON's exact range"
        )
    return value


def _no_constant(literal: str) -> Any:
    raise InvalidJsonError(f"{literal} is not a JSON number (I-JSON allows finite numbers only)")


def _refuse_lone_surrogate_escapes(text: str) -> None:
    for match in _ESCAPE.finditer(text):
        lone = match["lone_low"] or (match["high"] if not match["low"] else None)
        if lone:
            raise InvalidJsonError(f"lone UTF-16 surrogate escape \\u{lone} at char {match.start()}")
