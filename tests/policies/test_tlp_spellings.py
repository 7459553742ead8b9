"""tlp.normalise: the one place a TLP level given by a person or a file is read."""

from __future__ import annotations

from typing import Any

import pytest

from policies.tlp import LEVELS, normalise, rank


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("clear", "clear"),
        ("CLEAR", "clear"),
        ("white", "clear"),
        ("TLP:WHITE", "clear"),
        ("Tlp:White", "clear"),
        ("green", "green"),
        ("TLP:GREEN", "green"),
        ("amber", "amber"),
        ("AMBER", "amber"),
        ("TLP:AMBER", "amber"),
        ("tlp:amber", "amber"),
        ("amber+strict", "amber+strict"),
        ("AMBER+STRICT", "amber+strict"),
        ("TLP:Amber+Strict", "amber+strict"),
        ("red", "red"),
        ("TLP:RED", "red"),
        ("  amber  ", "amber"),
    ],
)
def test_every_accepted_spelling_gives_the_canonical_level(given: str, canonical: str) -> None:
    assert normalise(given) == canonical
    assert rank(given) == LEVELS.index(canonical)


@pytest.mark.parametrize(
    "given", ["", "purple", "amber strict", "amber-strict", "TLP:", "tlp:tlp:red", "TLP AMBER", None, 2]
)
def test_anything_else_is_refused_naming_the_levels(given: Any) -> None:
    with pytest.raises(ValueError) as refused:
        normalise(given)
    assert str(refused.value) == (
        f"unknown TLP level {given!r}; expected one of clear, green, amber, amber+strict, red"
    )


def test_canonical_levels_are_fixed_points() -> None:
    assert [normalise(level) for level in LEVELS] == list(LEVELS)
