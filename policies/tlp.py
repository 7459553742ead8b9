"""Traffic Light Protocol: levels, the canonical STIX marking definitions, and forgery checks.

Pure module: standard library only.

Where the canonical definitions were checked:
- TLP 1.0: against the `stix2` package (3.0.2), `stix2.v21.common.TLP_WHITE/GREEN/AMBER/RED`:
  same ids, created 2017-01-20T00:00:00.000Z, definition_type "tlp", definition {"tlp": <level>},
  names "TLP:WHITE" ...; `stix2` serialises them with spec_version "2.1".
- TLP 2.0: against OASIS's published objects in oasis-open/cti-stix-common-objects,
  `objects/marking-definition/marking-definition--<id>.json` (green, amber+strict, red),
  `extension-definition-specifications/tlp-2.0/examples/tlp-clear.json`, `tlp-amber.json`,
  `tlp-amber+strict.json`, and the JSON schema `extension-definition-specifications/tlp-2.0/
  marking-definition.json`, which fixes each id to its name and `tlp_2_0` value and allows no
  other extension content. These objects carry no definition_type and no definition.
"""

from __future__ import annotations

import re
from typing import Any

LEVELS: tuple[str, ...] = ("clear", "green", "amber", "amber+strict", "red")
TLP_2_0_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"

_RANKS = {level: index for index, level in enumerate(LEVELS)} | {"white": 0}

# id -> (TLP version, level as that version spells it)
_CANONICAL_IDS: dict[str, tuple[str, str]] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": ("1.0", "white"),
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": ("1.0", "green"),
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": ("1.0", "amber"),
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": ("1.0", "red"),
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": ("2.0", "clear"),
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": ("2.0", "green"),
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": ("2.0", "amber"),
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": ("2.0", "amber+strict"),
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": ("2.0", "red"),
}
_CREATED = {"1.0": "2017-01-20T00:00:00.000Z", "2.0": "2022-10-01T00:00:00.000Z"}


def _definition(marking_id: str, version: str, level: str) -> dict[str, Any]:
    common = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id,
        "created": _CREATED[version],
        "name": f"TLP:{level.upper()}",
    }
    if version == "1.0":
        return common | {"definition_type": "tlp", "definition": {"tlp": level}}
    extension = {"extension_type": "property-extension", "tlp_2_0": level}
    return common | {"extensions": {TLP_2_0_EXTENSION_ID: extension}}


CANONICAL_MARKINGS: dict[str, dict[str, Any]] = {
    marking_id: _definition(marking_id, version, level)
    for marking_id, (version, level) in _CANONICAL_IDS.items()
}
TLP_1_0: dict[str, dict[str, Any]] = {
    level: CANONICAL_MARKINGS[mid] for mid, (v, level) in _CANONICAL_IDS.items() if v == "1.0"
}
TLP_2_0: dict[str, dict[str, Any]] = {
    level: CANONICAL_MARKINGS[mid] for mid, (v, level) in _CANONICAL_IDS.items() if v == "2.0"
}

# Well-known non-OASIS ids that real tools mark with. OpenCTI (and many connectors built on
# it) marks TLP:AMBER+STRICT with this fixed id; treating it as unmarked would downgrade
# amber+strict content to the collection default, so it counts as amber+strict.
ALIAS_IDS: dict[str, str] = {
    "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37": "amber+strict",
}
_RANK_BY_ID = {mid: _RANKS[level] for mid, (_, level) in _CANONICAL_IDS.items()} | {
    mid: _RANKS[level] for mid, level in ALIAS_IDS.items()
}
_TIMESTAMP = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?Z")


def normalise(level: str) -> str:
    """The canonical lower-case level for any accepted spelling: any case, an optional "TLP:"
    prefix, "white" for "clear" ("AMBER", "TLP:Amber+Strict", "White" -> "amber",
    "amber+strict", "clear"); anything else is a ValueError naming the levels."""
    key = level.strip().lower() if isinstance(level, str) else ""
    key = key.removeprefix("tlp:")
    if key not in _RANKS:
        raise ValueError(f"unknown TLP level {level!r}; expected one of {', '.join(LEVELS)}")
    return LEVELS[_RANKS[key]]


def rank(level: str) -> int:
    """Rank of a TLP level, 0 (clear/white) to 4 (red), in any spelling `normalise` accepts."""
    return _RANKS[normalise(level)]


def level_of_marking(marking_id: str) -> str | None:
    """The TLP level of a canonical TLP 1.0/2.0 marking-definition id, else None."""
    marking_rank = _RANK_BY_ID.get(marking_id)
    return None if marking_rank is None else LEVELS[marking_rank]


def object_tlp(obj: dict[str, Any]) -> str | None:
    """Most restrictive TLP level an object carries (object and granular markings); None if unmarked.

    Fails closed: marking properties of the wrong shape make the object "red".
    """
    if not isinstance(obj, dict):
        return "red"
    best = -1
    refs = obj.get("object_marking_refs")
    if refs is not None:
        if not isinstance(refs, list):
            return "red"
        for ref in refs:
            if not isinstance(ref, str):
                return "red"
            best = max(best, _RANK_BY_ID.get(ref, -1))
    granular = obj.get("granular_markings")
    if granular is not None:
        if not isinstance(granular, list):
            return "red"
        for marking in granular:
            if not isinstance(marking, dict):
                return "red"
            ref = marking.get("marking_ref")
            if ref is None:
                continue  # a language marking
            if not isinstance(ref, str):
                return "red"
            best = max(best, _RANK_BY_ID.get(ref, -1))
    return LEVELS[best] if best >= 0 else None


def check_marking_definition(obj: dict[str, Any]) -> str | None:
    """Why `obj` is a forged TLP marking definition, or None when it is not one."""
    if not isinstance(obj, dict) or obj.get("type") != "marking-definition":
        return None
    marking_id = obj.get("id")
    known = _CANONICAL_IDS.get(marking_id) if isinstance(marking_id, str) else None
    if isinstance(marking_id, str) and marking_id in ALIAS_IDS:
        return _alias_difference(obj, ALIAS_IDS[marking_id])
    if known is None:
        claim = _tlp_claim(obj)
        if claim is None:
            return None
        return (
            f"forged TLP marking definition: {claim} claims TLP under the non-canonical id "
            f"{marking_id!r}; only the canonical TLP 1.0 and 2.0 definitions are accepted"
        )
    problem = _difference(obj, *known)
    if problem is None:
        return None
    version, level = known
    return f"forged TLP marking definition: {problem} (canonical TLP {version} {level.upper()})"


def _alias_difference(obj: dict[str, Any], level: str) -> str | None:
    """An alias id's definition may take any shape, but must not name another level."""
    texts = [obj.get("name")]
    for container in ("definition", "extensions"):
        value = obj.get(container)
        if isinstance(value, dict):
            texts += list(value.values())
            texts += [v for inner in value.values() if isinstance(inner, dict) for v in inner.values()]
    named = set()
    for text in texts:
        if isinstance(text, str):
            word = text.strip().lower().removeprefix("tlp:")
            if word in _RANKS:
                named.add(LEVELS[_RANKS[word]])
    if named - {level}:
        return (
            f"forged TLP marking definition: {obj.get('id')} is {level.upper()} but this "
            f"definition names {', '.join(sorted(named - {level}))}"
        )
    return None


def _tlp_claim(obj: dict[str, Any]) -> str | None:
    definition_type = obj.get("definition_type")
    if isinstance(definition_type, str) and definition_type.strip().lower() == "tlp":
        return f"'definition_type' {definition_type!r}"
    definition = obj.get("definition")
    if isinstance(definition, dict) and "tlp" in definition:
        return "'definition' with a 'tlp' member"
    extensions = obj.get("extensions")
    if isinstance(extensions, dict) and TLP_2_0_EXTENSION_ID in extensions:
        return f"'extensions' with {TLP_2_0_EXTENSION_ID}"
    return None


def _difference(obj: dict[str, Any], version: str, level: str) -> str | None:
    """First meaningful difference between `obj` and the canonical definition, if any."""
    canonical = CANONICAL_MARKINGS[obj["id"]]
    expected_keys = set(canonical)
    if version == "1.0" and "spec_version" not in obj:
        expected_keys.discard("spec_version")  # TLP 1.0 definitions are often sent in 2.0 form
    missing, extra = sorted(expected_keys - set(obj)), sorted(set(obj) - expected_keys)
    if missing:
        return f"'{missing[0]}' is missing"
    if extra:
        return f"'{extra[0]}' is not part of it"
    if obj.get("spec_version", "2.1") != "2.1":
        return f"'spec_version' is {obj['spec_version']!r}, not '2.1'"
    if obj["name"] != canonical["name"]:
        return f"'name' is {obj['name']!r}, not {canonical['name']!r}"
    if _instant(obj["created"]) != _instant(canonical["created"]):
        return f"'created' is {obj['created']!r}, not {canonical['created']!r}"
    if version == "1.0":
        if obj["definition_type"] != "tlp":
            return f"'definition_type' is {obj['definition_type']!r}, not 'tlp'"
        return _level_difference("definition", obj["definition"], "tlp", level)
    extensions = obj["extensions"]
    if not isinstance(extensions, dict) or set(extensions) != {TLP_2_0_EXTENSION_ID}:
        return f"'extensions' must hold exactly {TLP_2_0_EXTENSION_ID}"
    extension = extensions[TLP_2_0_EXTENSION_ID]
    if not isinstance(extension, dict) or extension.get("extension_type") != "property-extension":
        return "'extensions' lacks 'extension_type': 'property-extension'"
    body = {k: v for k, v in extension.items() if k != "extension_type"}
    return _level_difference("extensions", body, "tlp_2_0", level)


def _level_difference(prop: str, body: Any, member: str, level: str) -> str | None:
    if not isinstance(body, dict) or set(body) != {member}:
        return f"'{prop}' must hold exactly {{{member!r}: {level!r}}}"
    value = body[member]
    try:
        same = isinstance(value, str) and rank(value) == _RANKS[level]
    except ValueError:
        same = False
    return None if same else f"'{prop}' says {member} {value!r}, not {level!r}"


def _instant(timestamp: Any) -> str | None:
    """A timestamp with trailing fractional zeros removed, so .000Z and Z compare equal."""
    match = _TIMESTAMP.fullmatch(timestamp) if isinstance(timestamp, str) else None
    if match is None:
        return None
    return match[1] + "." + (match[2] or "").rstrip("0")


_STATEMENT_TLP = re.compile(
    r"\b(?:TLP|traffic\s+light\s+protocol)\s*(?:v?[12]\.0\s*)?[:_\-/=]?\s*"
    r"(CLEAR|WHITE|GREEN|AMBER\s*\+\s*STRICT|AMBER|RED)\b",
    re.IGNORECASE,
)


def statement_level(obj: Any) -> str | None:
    """The TLP level a non-canonical marking definition reads as ("TLP:RED", "tlp: amber+strict"
    in its statement or name), the most restrictive if it names several; None if it names none.

    MISP and OpenCTI exports often carry TLP as such statements. Reading them as the level
    they state, never as unmarked, fails closed.
    """
    if not isinstance(obj, dict) or obj.get("type") != "marking-definition":
        return None
    marking_id = obj.get("id")
    if marking_id in _CANONICAL_IDS or marking_id in ALIAS_IDS:
        return None
    texts = [obj.get("name")]
    definition = obj.get("definition")
    if isinstance(definition, dict):
        texts.append(definition.get("statement"))
    best = -1
    for text in texts:
        if isinstance(text, str):
            for match in _STATEMENT_TLP.finditer(text):
                word = re.sub(r"\s+", "", match[1]).lower()
                best = max(best, _RANKS[word])
    return LEVELS[best] if best >= 0 else None


def marking_refs(obj: Any) -> set[str]:
    """Every marking-definition id an object is marked with (object and granular markings)."""
    found: set[str] = set()
    if not isinstance(obj, dict):
        return found
    refs = obj.get("object_marking_refs")
    if isinstance(refs, list):
        found |= {ref for ref in refs if isinstance(ref, str)}
    granular = obj.get("granular_markings")
    if isinstance(granular, list):
        found |= {
            m["marking_ref"]
            for m in granular
            if isinstance(m, dict) and isinstance(m.get("marking_ref"), str)
        }
    return found
