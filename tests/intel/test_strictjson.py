"""Strict JSON parsing (I-JSON, no duplicate keys, bounded depth) and RFC 8785 text."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import InvalidJsonError
from exchange.intel.strictjson import canonical_text, loads_strict


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        # not UTF-8
        (b'["\xff"]', "invalid UTF-8 at byte 2"),
        (b'["\xc0\xaf"]', "invalid UTF-8 at byte 2"),  # overlong '/'
        (b'["\xed\xa0\x80"]', "invalid UTF-8 at byte 2"),  # a surrogate encoded as UTF-8
        (b"\xfe\xff\x00[\x00]", "invalid UTF-8"),  # UTF-16
        # malformed
        (b"", "malformed JSON: Expecting value at line 1 column 1"),
        (b'{"a": 1,}', "malformed JSON"),
        (b"{'a': 1}", "malformed JSON"),
        (b"[1] [2]", "Extra data at line 1 column 5"),
        (b'["abc', "Unterminated string"),
        (b'["a\nb"]', "Invalid control character"),
        (b'{"a" 1}', "line 1 column 6"),
        (b"[01]", "malformed JSON"),
        (b"\n\n  [1,]", "line 3 column"),
        ("\ufeff[]".encode(), "BOM"),
        # duplicate keys, at any depth
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"objects": [{"id": "x", "type": "t", "id": "y"}]}', "duplicate key 'id'"),
        (b'{"\\u0061": 1, "a": 2}', "duplicate key 'a'"),
        # values I-JSON cannot carry
        (b"[NaN]", "NaN"),
        (b"[Infinity]", "Infinity"),
        (b'{"x": -Infinity}', "-Infinity"),
        (b"[9007199254740992]", "integer 9007199254740992 is outside I-JSON"),
        (b"[-9007199254740992]", "integer -9007199254740992"),
        (b"[123456789012345678901234567890]", "outside I-JSON's exact range"),
        (b"[1e400]", "number 1e400 overflows"),
        (b"[-1.5E+309]", "number -1.5E+309 overflows"),
        (b"[1e20]", "number 1e20 would be canonicalised as an integer outside"),
        (b"[-9007199254740992.0]", "would be canonicalised as an integer"),
        # lone surrogates, escaped or raw, in keys or values
        (b'["\\ud800"]', "lone UTF-16 surrogate escape \\ud800 at char 2"),
        (b'["\\uDC00"]', "lone UTF-16 surrogate escape \\uDC00"),
        (b'{"k\\udbff": 1}', "lone UTF-16 surrogate escape \\udbff at char 3"),
        (b'["\\ud83d\\u0041"]', "lone UTF-16 surrogate escape \\ud83d"),
        (b'["\\ud83d\\ud83d\\ude00"]', "lone UTF-16 surrogate escape \\ud83d at char 2"),
        (b'["\\\\\\ud800"]', "lone UTF-16 surrogate escape \\ud800 at char 4"),
        ('["\ud800"]', "lone UTF-16 surrogate at char 2"),
        # too deep
        (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
    ],
)
def test_refused_with_a_specific_message(data: bytes | str, fragment: str) -> None:
    with pytest.raises(InvalidJsonError) as caught:
        loads_strict(data)
    assert fragment in caught.value.message
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[9007199254740991, -9007199254740991]", [2**53 - 1, -(2**53 - 1)]),
        (
            b"[1.5e300, -0, 0.1, 1E2, 1e-400, 1e21, 9007199254740991.0]",
            [1.5e300, 0, 0.1, 100.0, 0.0, 1e21, 2.0**53 - 1],
        ),
        (b'["\\ud83d\\ude00", "\\u00e9", "\xc3\xa9"]', ["\U0001f600", "\u00e9", "\u00e9"]),
        (b'["\\\\ud800"]', ["\\ud800"]),  # an escaped backslash, not a surrogate
        (
            b'{"a": {"a": {"a": 1}}, "b": [true, false, null]}',
            {"a": {"a": {"a": 1}}, "b": [True, False, None]},
        ),
        ('{"name": "caf\u00e9"}', {"name": "caf\u00e9"}),
        (bytearray(b"[1]"), [1]),
        (b" \t\r\n[] ", []),
    ],
)
def test_accepted(data: bytes | str | bytearray, expected: Any) -> None:
    assert loads_strict(data) == expected


def test_depth_limit_is_inclusive_and_configurable() -> None:
    assert loads_strict(b"[" * 64 + b"]" * 64) is not None
    assert loads_strict(b"[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(InvalidJsonError, match="deeper than 2"):
        loads_strict(b"[[[1]]]", max_depth=2)


@pytest.mark.parametrize(
    "data",
    [
        b'["' + b"[" * 200 + b'"]',  # brackets inside strings are text
        b'["\\"' + b"[" * 200 + b'"]',  # after an escaped quote we are still inside the string
        b'{"\\\\": "' + b"{" * 200 + b'"}',  # escaped backslash before a closing quote
        b'["", "", "' + b"[{" * 100 + b'", ""]',
    ],
)
def test_brackets_inside_strings_do_not_count(data: bytes) -> None:
    assert loads_strict(data, max_depth=2) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 1_000_000,
        b"[" * 1_000_000 + b"]" * 1_000_000,
        b'{"a":' * 1_000_000,
        b'["\\"]",' * 200_000 + b"[" * 100,
    ],
)
def test_a_million_levels_are_refused_fast_without_recursion(data: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidJsonError, match="nested deeper than 64"):
        loads_strict(data)
    assert time.perf_counter() - started < 1.0


def test_huge_integer_literal_is_refused_without_converting_it() -> None:
    with pytest.raises(InvalidJsonError, match="outside I-JSON"):
        loads_strict(b"[" + b"9" * 1_000_000 + b"]")


def test_envelope_of_indicators_parses_like_json() -> None:
    objects = [
        {
            "type": "indicator",
            "id": f"indicator--{i:08x}-0000-4000-8000-000000000000",
            "pattern": f"[ipv4-addr:value = '10.0.{i // 256}.{i % 256}']",
            "confidence": 80,
            "labels": ["c2"],
            "x_opencti_score": 1.5,
        }
        for i in range(1000)
    ]
    data = json.dumps({"more": False, "objects": objects}).encode()
    assert loads_strict(data) == json.loads(data)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "a": [1.0, 1e21, 0.000001, -0.0]}, '{"a":[1,1e+21,0.000001,0],"b":1}'),
        ({"\u20ac": "\u00e9\n", "a": None}, '{"a":null,"\u20ac":"\u00e9\\n"}'),
        ({"\ue000": 1, "\U0001f600": 2}, '{"\U0001f600":2,"\ue000":1}'),  # UTF-16 code unit order
        ([True, False, "x"], '[true,false,"x"]'),
    ],
)
def test_canonical_text_is_rfc_8785(value: Any, text: str) -> None:
    assert canonical_text(value) == text


@pytest.mark.parametrize(
    "value",
    [
        {"n": 2**53},
        [float("nan")],
        [math.inf],
        {1: "non-string key"},
        {"x": {1, 2}},
    ],
)
def test_canonical_text_refuses_what_rfc_8785_cannot_carry(value: Any) -> None:
    with pytest.raises(InvalidJsonError, match="RFC 8785"):
        canonical_text(value)


FLOATS = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not 2**53 - 1 < abs(f) < 1e21
)  # refused: RFC 8785 would write them as integers
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | FLOATS | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_canonical_text_round_trips_through_loads_strict(value: Any) -> None:
    text = canonical_text(value)
    assert loads_strict(text) == value
    assert canonical_text(loads_strict(text.encode())) == text
