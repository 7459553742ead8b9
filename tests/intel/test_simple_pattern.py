"""The fast path for one-comparison patterns agrees with the ANTLR grammar it stands in for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.intel import validation

OBJECT_PATHS = [
    "ipv4-addr:value",
    "domain-name:value",
    "url:value",
    "file:hashes.'SHA-256'",
    "file:hashes.'MD5'",
    "email-addr:value",
    "mutex:value",
]
literal_chars = st.text(alphabet=st.sampled_from(list("ab1.:/-_ '\\\n\"é")), max_size=12)


def antlr_problem(pattern: str) -> str | None:
    validation._pattern_problem.cache_clear()
    simple = validation._SIMPLE_PATTERN
    validation._SIMPLE_PATTERN = __import__("re").compile(r"(?!)")  # never matches: force ANTLR
    try:
        return validation._pattern_problem(pattern)
    finally:
        validation._SIMPLE_PATTERN = simple
        validation._pattern_problem.cache_clear()


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(OBJECT_PATHS), body=literal_chars)
def test_fast_path_never_accepts_what_the_grammar_refuses(path: str, body: str) -> None:
    pattern = f"[{path} = '{body}']"
    if validation.simple_pattern(pattern):
        assert antlr_problem(pattern) is None, pattern


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(OBJECT_PATHS),
    body=st.text(alphabet=st.sampled_from(list("ab1.:/-_ é")), max_size=12),
)
def test_escaped_literals_take_the_fast_path(path: str, body: str) -> None:
    escaped = body.replace("\\", "\\\\").replace("'", "\\'")
    pattern = f"[{path} = '{escaped}']"
    assert validation.simple_pattern(pattern)
    assert antlr_problem(pattern) is None


def test_other_shapes_still_go_through_the_grammar() -> None:
    for pattern in (
        "[ipv4-addr:value = '1.2.3.4' OR ipv4-addr:value = '1.2.3.5']",
        "[true:value = 'x']",
        "[ipv4-addr:value = 'a'b']",
        "[url:value = 'a\\']",
    ):
        assert not validation.simple_pattern(pattern)
    assert validation._pattern_problem("[url:value = 'a\\']") is not None
