"""TLP levels, canonical marking definitions and forged-definition detection."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import stix2

from policies import tlp
from policies.tlp import (
    CANONICAL_MARKINGS,
    LEVELS,
    TLP_1_0,
    TLP_2_0,
    check_marking_definition,
    level_of_marking,
    object_tlp,
    rank,
)

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
# The TLP 2.0 ids as DESIGN.md lists them (and OASIS publishes them).
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
WHITE1, GREEN1, AMBER1, RED1 = (
    m.id for m in (stix2.TLP_WHITE, stix2.TLP_GREEN, stix2.TLP_AMBER, stix2.TLP_RED)
)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("clear", 0),
        ("white", 0),
        ("WHITE", 0),
        ("TLP:CLEAR", 0),
        ("green", 1),
        ("Green", 1),
        ("amber", 2),
        ("TLP:AMBER", 2),
        ("amber+strict", 3),
        ("TLP:AMBER+STRICT", 3),
        ("tlp:amber+strict", 3),
        ("red", 4),
        ("TLP:RED", 4),
        (" red ", 4),
    ],
)
def test_rank(level: str, expected: int) -> None:
    assert rank(level) == expected


@pytest.mark.parametrize(
    "level", ["", "black", "amber strict", "amber-strict", "TLP:", "tlp:tlp:red", None, 3]
)
def test_rank_refuses_unknown_levels(level: Any) -> None:
    with pytest.raises(ValueError, match="unknown TLP level"):
        rank(level)


def test_levels_are_ordered_by_rank() -> None:
    assert [rank(level) for level in LEVELS] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("stix2_marking", [stix2.TLP_WHITE, stix2.TLP_GREEN, stix2.TLP_AMBER, stix2.TLP_RED])
def test_tlp_1_0_definitions_match_the_stix2_library(stix2_marking: Any) -> None:
    ours = CANONICAL_MARKINGS[stix2_marking.id]
    assert ours == json.loads(stix2_marking.serialize())
    assert TLP_1_0[stix2_marking.definition.tlp] == ours


@pytest.mark.parametrize("level", list(TLP2_IDS))
def test_tlp_2_0_definitions_match_oasis(level: str) -> None:
    assert TLP_2_0[level] == {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2_IDS[level],
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{level.upper()}",
        "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    }


def test_canonical_markings_hold_exactly_the_nine_definitions() -> None:
    assert set(CANONICAL_MARKINGS) == {WHITE1, GREEN1, AMBER1, RED1, *TLP2_IDS.values()}
    assert all(CANONICAL_MARKINGS[mid]["id"] == mid for mid in CANONICAL_MARKINGS)


@pytest.mark.parametrize(
    ("marking_id", "level"),
    [
        (WHITE1, "clear"),
        (GREEN1, "green"),
        (AMBER1, "amber"),
        (RED1, "red"),
        *[(mid, level) for level, mid in TLP2_IDS.items()],
        ("marking-definition--00000000-0000-4000-8000-000000000000", None),
        ("not an id", None),
    ],
)
def test_level_of_marking(marking_id: str, level: str | None) -> None:
    assert level_of_marking(marking_id) == level


def _marked(refs: Any = None, granular: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}
    if refs is not None:
        obj["object_marking_refs"] = refs
    if granular is not None:
        obj["granular_markings"] = granular
    return obj


STATEMENT = "marking-definition--1d8a7bd4-0e6b-4f6e-9b1c-4a8e0f3f0f11"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_marked(), None),
        (_marked([STATEMENT]), None),
        (_marked([WHITE1]), "clear"),
        (_marked([TLP2_IDS["clear"]]), "clear"),
        (_marked([GREEN1, TLP2_IDS["amber"]]), "amber"),
        (_marked([TLP2_IDS["amber+strict"], AMBER1]), "amber+strict"),
        (_marked([TLP2_IDS["amber+strict"], RED1, STATEMENT]), "red"),
        (_marked([WHITE1], [{"marking_ref": TLP2_IDS["red"], "selectors": ["description"]}]), "red"),
        (_marked(None, [{"marking_ref": GREEN1, "selectors": ["name"]}]), "green"),
        (_marked([AMBER1], [{"lang": "en", "selectors": ["name"]}]), "amber"),
        (_marked(None, [{"lang": "en", "selectors": ["name"]}]), None),
    ],
)
def test_object_tlp_takes_the_most_restrictive_marking(obj: dict[str, Any], expected: str | None) -> None:
    assert object_tlp(obj) == expected


@pytest.mark.parametrize(
    "obj",
    [
        _marked(GREEN1),  # a string, not a list
        _marked([GREEN1, 7]),
        _marked(None, {"marking_ref": GREEN1}),
        _marked(None, ["marking"]),
        _marked([GREEN1], [{"marking_ref": ["x"], "selectors": ["name"]}]),
        "not an object",
    ],
)
def test_object_tlp_fails_closed_on_malformed_markings(obj: Any) -> None:
    assert object_tlp(obj) == "red"


@pytest.mark.parametrize("definition", list(CANONICAL_MARKINGS.values()), ids=lambda d: d["name"])
def test_canonical_definitions_are_not_forged(definition: dict[str, Any]) -> None:
    assert check_marking_definition(copy.deepcopy(definition)) is None


def test_tolerated_variants_of_canonical_definitions() -> None:
    no_fraction = dict(CANONICAL_MARKINGS[AMBER1], created="2017-01-20T00:00:00Z")
    long_fraction = dict(TLP_2_0["red"], created="2022-10-01T00:00:00.000000Z")
    in_2_0_form = {k: v for k, v in CANONICAL_MARKINGS[GREEN1].items() if k != "spec_version"}
    clear_on_white = dict(CANONICAL_MARKINGS[WHITE1], definition={"tlp": "clear"})
    for variant in (no_fraction, long_fraction, in_2_0_form, clear_on_white):
        assert check_marking_definition(variant) is None, variant


def _changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            result.pop(key)
        else:
            result[key] = value
    return result


DROP = object()
AMBER2 = TLP_2_0["amber"]


def _tlp2_extension(**body: Any) -> dict[str, Any]:
    return {TLP2_EXTENSION: {"extension_type": "property-extension", **body}}


@pytest.mark.parametrize(
    ("obj", "prop"),
    [
        # a canonical id with other content
        (_changed(CANONICAL_MARKINGS[AMBER1], name="TLP:GREEN"), "name"),
        (_changed(CANONICAL_MARKINGS[AMBER1], definition={"tlp": "green"}), "definition"),
        (_changed(CANONICAL_MARKINGS[AMBER1], definition={"tlp": "amber", "x": 1}), "definition"),
        (_changed(CANONICAL_MARKINGS[AMBER1], definition="amber"), "definition"),
        (_changed(CANONICAL_MARKINGS[AMBER1], definition_type="statement"), "definition_type"),
        (_changed(CANONICAL_MARKINGS[AMBER1], created="2017-01-20T00:00:00.001Z"), "created"),
        (_changed(CANONICAL_MARKINGS[AMBER1], created="2017-01-20"), "created"),
        (_changed(CANONICAL_MARKINGS[AMBER1], spec_version="2.0"), "spec_version"),
        (_changed(CANONICAL_MARKINGS[AMBER1], x_note="relax"), "x_note"),
        (
            _changed(
                CANONICAL_MARKINGS[AMBER1], created_by_ref="identity--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
            ),
            "created_by_ref",
        ),
        (_changed(CANONICAL_MARKINGS[AMBER1], extensions=_tlp2_extension(tlp_2_0="amber")), "extensions"),
        (_changed(CANONICAL_MARKINGS[RED1], name=DROP), "name"),
        (_changed(AMBER2, name="TLP:AMBER+STRICT"), "name"),
        (_changed(AMBER2, extensions=_tlp2_extension(tlp_2_0="clear")), "extensions"),
        (_changed(AMBER2, extensions=_tlp2_extension(tlp_2_0="amber", note="x")), "extensions"),
        (_changed(AMBER2, extensions={TLP2_EXTENSION: {"tlp_2_0": "amber"}}), "extensions"),
        (
            _changed(
                AMBER2,
                extensions={
                    **_tlp2_extension(tlp_2_0="amber"),
                    "extension-definition--1d8a7bd4-0e6b-4f6e-9b1c-4a8e0f3f0f11": {},
                },
            ),
            "extensions",
        ),
        (_changed(AMBER2, created="2022-10-01T00:00:01.000Z"), "created"),
        (_changed(AMBER2, spec_version=DROP), "spec_version"),
        (_changed(AMBER2, definition_type="tlp", definition={"tlp": "amber"}), "definition"),
        # TLP claimed under an id that is not canonical
        (_changed(CANONICAL_MARKINGS[GREEN1], id=STATEMENT), "definition_type"),
        (_changed(CANONICAL_MARKINGS[GREEN1], id=STATEMENT, definition_type="TLP"), "definition_type"),
        (_changed(AMBER2, id=STATEMENT), "extensions"),
        (
            {
                "type": "marking-definition",
                "id": STATEMENT,
                "created": "2020-01-01T00:00:00Z",
                "definition_type": "x-acme",
                "definition": {"tlp": "clear"},
            },
            "definition",
        ),
    ],
)
def test_forged_definitions_are_named(obj: dict[str, Any], prop: str) -> None:
    message = check_marking_definition(obj)
    assert message is not None and message.startswith("forged TLP marking definition")
    assert f"'{prop}'" in message


@pytest.mark.parametrize(
    "obj",
    [
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": STATEMENT,
            "created": "2020-01-01T00:00:00.000Z",
            "definition_type": "statement",
            "definition": {"statement": "Copyright 2024, Example Corp"},
        },
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": STATEMENT,
            "created": "2020-01-01T00:00:00.000Z",
            "name": "PAP:GREEN",
            "extensions": {
                "extension-definition--f8d78575-edfd-406e-8e84-6162a8450f5b": {
                    "extension_type": "property-extension",
                    "pap": "green",
                }
            },
        },
        _changed(AMBER2, type="indicator"),  # not a marking definition at all
    ],
)
def test_other_markings_are_not_forgeries(obj: dict[str, Any]) -> None:
    assert check_marking_definition(obj) is None


def test_module_is_pure() -> None:
    source = Path(tlp.__file__).read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert all(line.split()[1] in {"__future__", "re", "typing"} for line in imports), imports


OPENCTI_AMBER_STRICT = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"


def test_opencti_amber_strict_id_counts_as_amber_strict():
    from policies.tlp import object_tlp

    assert object_tlp({"object_marking_refs": [OPENCTI_AMBER_STRICT]}) == "amber+strict"


def test_opencti_amber_strict_definition_is_accepted_unless_it_names_another_level():
    from policies.tlp import check_marking_definition

    exported = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": OPENCTI_AMBER_STRICT,
        "created": "2022-10-01T00:00:00.000Z",
        "definition_type": "TLP",
        "definition": {"TLP": "TLP:AMBER+STRICT"},
        "name": "TLP:AMBER+STRICT",
    }
    assert check_marking_definition(exported) is None
    lying = dict(exported, name="TLP:CLEAR", definition={"TLP": "TLP:CLEAR"})
    assert "clear" in check_marking_definition(lying)
