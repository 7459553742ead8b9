"""STIX 2.1 validation for ingest: strict about what the spec forbids, open to what it allows.

Property types and required properties come from the `stix2` library's v21 class metadata,
read once at import; objects are checked as plain dicts (no `stix2.parse`, which is ~50x slower).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import antlr4
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.error.Errors import ParseCancellationException
from stix2 import properties as sp
from stix2.base import _STIXBase
from stix2.registry import STIX2_OBJ_MAPS
from stix2.v21.common import ExternalReference
from stix2patterns.exceptions import ParseException
from stix2patterns.v21.grammars.STIXPatternLexer import STIXPatternLexer
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser
from stix2patterns.v21.pattern import Pattern
from stix2patterns.v21.validator import DuplicateQualifierTypeError, ValidationListener

from exchange.errors import InvalidStixError
from exchange.intel.timestamps import MAX_FRACTION_DIGITS, stix_version_key
from policies.tlp import TLP_1_0, check_marking_definition, object_tlp


@dataclass(frozen=True, slots=True)
class StixMeta:
    """What the store needs to know about a valid object."""

    stix_id: str
    type: str
    spec_version: str
    created: str | None
    modified: str | None
    version: str  # modified, else created, as YYYY-MM-DDTHH:MM:SS.fffffffffZ; "" if neither
    confidence: int | None
    revoked: bool
    tlp: str | None


Check = Callable[[Any], "str | None"]  # returns what is wrong with a value, or None

SCO_TYPES = frozenset(
    {
        "artifact",
        "autonomous-system",
        "directory",
        "domain-name",
        "email-addr",
        "email-message",
        "file",
        "ipv4-addr",
        "ipv6-addr",
        "mac-addr",
        "mutex",
        "network-traffic",
        "process",
        "software",
        "url",
        "user-account",
        "windows-registry-key",
        "x509-certificate",
    }
)
_EXTENSION_TYPES = frozenset(
    {
        "new-sdo",
        "new-sco",
        "new-sro",
        "property-extension",
        "toplevel-property-extension",
    }
)
_TIME_ORDER = (  # (earlier, later, may they be equal?)
    ("created", "modified", True),
    ("first_seen", "last_seen", True),
    ("first_observed", "last_observed", True),
    ("valid_from", "valid_until", False),
    ("start_time", "stop_time", False),
)

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_TYPE_NAME = re.compile(r"(?:[a-z0-9]+-)*[a-z0-9]+")
_IDENTIFIER = re.compile(rf"((?:[a-z0-9]+-)*[a-z0-9]+)--{_UUID}")
_EXTENSION_DEFINITION_ID = re.compile(rf"extension-definition--{_UUID}")
_PROPERTY_NAME = re.compile(r"[a-z0-9_]{3,250}")
_RELATIONSHIP_TYPE = re.compile(r"[a-z0-9-]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def validate_object(obj: Any) -> StixMeta:
    """Check one STIX 2.1 object; raise InvalidStixError naming the object and property."""
    if not isinstance(obj, dict):
        raise InvalidStixError(f"a STIX object must be a JSON object, got {_show(obj)}")
    typ, stix_id = obj.get("type"), obj.get("id")
    where = f"{stix_id}: " if isinstance(stix_id, str) and len(stix_id) <= 300 else ""

    def fail(problem: str) -> InvalidStixError:
        return InvalidStixError(where + problem)

    if not _is_type_name(typ):
        raise fail(f"'type' {_show(typ)} is not a STIX type name (3-250 of a-z, 0-9, single '-')")
    if typ == "bundle":
        raise fail("'type' bundle is a container, not a STIX object; send its objects instead")
    id_type = _id_type(stix_id)
    if id_type is None:
        raise fail(
            f"'id' {_show(stix_id)} is not '<type>--<RFC 4122 UUID>' (lowercase, 8-4-4-4-12, variant 10xx)"
        )
    if id_type != typ:
        raise fail(f"'id' names type {id_type!r} but 'type' is {typ!r}")
    _check_spec_version(obj, typ, fail)

    checks = _CHECKS.get(typ, _COMMON_CHECKS)
    for name, value in obj.items():
        check = checks.get(name)
        if check is None:
            if name in ("type", "id", "spec_version"):
                continue
            if not _is_property_name(name):
                raise fail(f"property name {name!r} is not allowed (3-250 characters of a-z, 0-9 and '_')")
            check = _generic_check(name)
            if check is None:
                continue
        problem = check(value)
        if problem is not None:
            raise fail(f"'{name}' {problem}")
    for name in _REQUIRED.get(typ, ()):
        if name not in obj:
            raise fail(f"'{name}' is required for {typ}")
    problem = _time_order_problem(obj, checks) or _type_rule_problem(obj, typ)
    if problem is not None:
        raise fail(problem)
    if obj.get("revoked", False) is not False and (
        typ in SCO_TYPES or not ("created" in obj or "modified" in obj)
    ):
        # Only versioned objects are revoked (STIX 2.1 section 3.6); an observable's id is derived
        # from its value, so a "revoked" one would read as every party's copy of that value revoked.
        # `"revoked": false` says nothing and is kept (some tools write it on every object).
        raise fail(
            "'revoked' is not a property of cyber-observable objects (STIX 2.1 defines it only for "
            "objects with created/modified): an observable is not versioned, so it cannot be revoked"
        )

    created, modified = obj.get("created"), obj.get("modified")
    version = _version_key(modified) or _version_key(created) or ""
    return StixMeta(
        stix_id=cast(str, stix_id),  # `_id_type` accepted it, so it is a string
        type=typ,
        spec_version="2.1",
        created=created,
        modified=modified,
        version=version,
        confidence=obj.get("confidence"),
        revoked=obj.get("revoked") is True,
        tlp=object_tlp(obj),
    )


def _check_spec_version(obj: dict[str, Any], typ: str, fail: Callable[[str], Exception]) -> None:
    if "spec_version" in obj:
        if obj["spec_version"] != "2.1":
            raise fail(f"'spec_version' must be \"2.1\", got {_show(obj['spec_version'])}")
    elif typ not in SCO_TYPES and not _is_tlp_1_0_in_2_0_form(obj):
        raise fail(f"'spec_version' is required for {typ} (STIX 2.1 objects say \"2.1\")")


def _is_tlp_1_0_in_2_0_form(obj: dict[str, Any]) -> bool:
    """Canonical TLP 1.0 definitions often travel without spec_version; tlp.py vets the rest."""
    return obj["id"] in _TLP_1_0_IDS


_TLP_1_0_IDS = frozenset(definition["id"] for definition in TLP_1_0.values())


def _time_order_problem(obj: dict[str, Any], checks: dict[str, Check]) -> str | None:
    """Ordered timestamp pairs; both were already checked to be valid timestamps."""
    for earlier, later, may_equal in _TIME_ORDER:
        if earlier in obj and later in obj and earlier in checks and later in checks:
            first, second = _version_key(obj[earlier]), _version_key(obj[later])
            if first is None or second is None:  # not timestamps: their own checks said so
                continue
            if second < first:
                return f"'{later}' ({obj[later]}) is before '{earlier}' ({obj[earlier]})"
            if second == first and not may_equal:
                return f"'{later}' ({obj[later]}) must be later than '{earlier}' ({obj[earlier]})"
    return None


def _type_rule_problem(obj: dict[str, Any], typ: str) -> str | None:
    """The spec's MUSTs that are more than 'property X is required'."""
    if typ == "indicator" and obj["pattern_type"] == "stix":
        problem = _pattern_problem(obj["pattern"])
        return None if problem is None else f"'pattern' is not a valid STIX 2.1 pattern: {problem}"
    if typ == "relationship" and not _RELATIONSHIP_TYPE.fullmatch(obj["relationship_type"]):
        return f"'relationship_type' {obj['relationship_type']!r} may use only a-z, 0-9 and '-'"
    if typ == "marking-definition":
        if obj["id"] in obj.get("object_marking_refs", ()):
            return "'object_marking_refs' must not reference the marking definition itself"
        if not (("definition_type" in obj and "definition" in obj) or "extensions" in obj):
            return "'definition_type' and 'definition' are required when 'extensions' is absent"
        return check_marking_definition(obj)
    one_of = _AT_LEAST_ONE.get(typ)
    if one_of and not any(name in obj for name in one_of):
        return f"{typ} needs at least one of " + ", ".join(f"'{n}'" for n in one_of)
    if typ == "observed-data" and "objects" in obj and "object_refs" in obj:
        return "'objects' and 'object_refs' must not both be present"
    if typ == "malware" and obj["is_family"] and "name" not in obj:
        return "'name' is required when 'is_family' is true"
    if typ == "artifact":
        if "payload_bin" in obj and "url" in obj:
            return "'payload_bin' and 'url' must not both be present"
        if "url" in obj and "hashes" not in obj:
            return "'hashes' is required when 'url' is present"
    if typ == "location":
        if ("latitude" in obj) != ("longitude" in obj):
            return "'latitude' and 'longitude' must be given together"
        if not ("region" in obj or "country" in obj or "latitude" in obj):
            return "location needs 'region', 'country', or 'latitude' and 'longitude'"
    return None


_AT_LEAST_ONE = {
    "file": ("hashes", "name"),
    "network-traffic": ("src_ref", "dst_ref"),
    "malware-analysis": ("result", "analysis_sco_refs"),
    "observed-data": ("objects", "object_refs"),
}


# ---- patterns -------------------------------------------------------------------------------


class _PatternRules(ValidationListener):  # type: ignore[misc]  # stix2patterns is untyped
    """What the grammar lets through: object types and first path components must be STIX
    names, timestamps real dates; the base class refuses a repeated qualifier."""

    def exitObjectType(self, ctx: Any) -> None:  # noqa: N802 (ANTLR's naming)
        name = ctx.getText()
        if not _is_type_name(name):
            raise _PatternRuleError(f"object type {name!r} is not a STIX type name")

    def exitFirstPathComponent(self, ctx: Any) -> None:  # noqa: N802
        name = ctx.getText()
        name = name[1:-1] if ctx.StringLiteral() else name
        if not _is_property_name(name):
            raise _PatternRuleError(f"property {name!r} is not a STIX property name")

    def visitTerminal(self, node: Any) -> None:  # noqa: N802
        if node.symbol.type == STIXPatternParser.TimestampLiteral:
            literal = node.getText()
            if _version_key(literal[2:-1]) is None:
                raise _PatternRuleError(f"timestamp {literal} is not a real date and time")


class _PatternRuleError(Exception):
    pass


# The one-comparison patterns feeds and analysts produce by the million, e.g.
# [ipv4-addr:value = '198.51.100.7'] or [file:hashes.'SHA-256' = '...']: this is exactly the
# grammar's production for them (a string literal holds anything but a bare quote or backslash),
# so they need not go through ANTLR, which costs about 0.5 ms per pattern.
_SIMPLE_PATTERN = re.compile(
    r"\[(?:(?:ipv4-addr|ipv6-addr|domain-name|url|email-addr|mac-addr|mutex|directory):value"
    r"|file:hashes\.'(?:MD5|SHA-1|SHA-256|SHA-512|SHA3-256|SHA3-512|SSDEEP|TLSH)')"
    r" = '(?:[^'\\]|\\['\\])*'\]",
    re.DOTALL,
)


def simple_pattern(pattern: str) -> bool:
    """True for a single `=` comparison on a common observable, which the grammar always accepts."""
    return _SIMPLE_PATTERN.fullmatch(pattern) is not None


# ANTLR's parser and tree walker recurse once per nesting level and per chained operator, and
# their cost grows faster than linearly: 1,000 ORs exhaust Python's recursion limit and 500 take
# a third of a second. Patterns in real use have a handful of each, so bound them before parsing.
MAX_PATTERN_LENGTH = 32_768
MAX_PATTERN_DEPTH = 32
MAX_PATTERN_BRACKETS = 128
MAX_PATTERN_OPERATORS = 64
_PATTERN_STRING = re.compile(r"'(?:[^'\\]|\\.)*'", re.DOTALL)
_PATTERN_OPERATOR = re.compile(r"\b(?:AND|OR|FOLLOWEDBY)\b")


def _pattern_size_problem(pattern: str) -> str | None:
    """What makes a pattern too big to parse, counted outside its string literals; never recurses."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"it has {len(pattern)} characters; the exchange takes at most {MAX_PATTERN_LENGTH}"
    skeleton = _PATTERN_STRING.sub("''", pattern)
    operators = len(_PATTERN_OPERATOR.findall(skeleton))
    if operators > MAX_PATTERN_OPERATORS:
        return (
            f"it chains {operators} AND/OR/FOLLOWEDBY operators; "
            f"the exchange takes at most {MAX_PATTERN_OPERATORS}"
        )
    depth = deepest = opened = 0
    for char in skeleton:
        if char in "([":
            depth += 1
            opened += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    if deepest > MAX_PATTERN_DEPTH:
        return f"it nests brackets {deepest} deep; the exchange takes at most {MAX_PATTERN_DEPTH}"
    if opened > MAX_PATTERN_BRACKETS:
        return f"it opens {opened} brackets; the exchange takes at most {MAX_PATTERN_BRACKETS}"
    return None


@functools.lru_cache(maxsize=8192)
def _pattern_problem(pattern: str) -> str | None:
    """Parse with ANTLR's fast SLL mode; only on failure ask the full parser for a verdict."""
    if simple_pattern(pattern):
        return None
    too_big = _pattern_size_problem(pattern)
    if too_big is not None:
        return too_big
    listener = _PatternRules()
    try:
        try:
            antlr4.ParseTreeWalker.DEFAULT.walk(listener, _parse_sll(pattern))
        except ParseCancellationException:  # SLL is weaker than full LL: let Pattern decide
            Pattern(pattern).walk(listener)
    except (ParseException, _PatternRuleError, DuplicateQualifierTypeError) as exc:
        return str(exc)
    except RecursionError:  # a shape the bounds above did not foresee
        return "it is nested too deeply to parse"
    return None


def _parse_sll(pattern: str) -> Any:
    lexer = STIXPatternLexer(antlr4.InputStream(pattern))
    lexer.removeErrorListeners()
    parser = STIXPatternParser(antlr4.CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser._errHandler = antlr4.BailErrorStrategy()  # the runtime has no public setter
    parser._interp.predictionMode = PredictionMode.SLL
    return parser.pattern()


# ---- value checks ---------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_type_name(value: Any) -> bool:
    return isinstance(value, str) and 3 <= len(value) <= 250 and _TYPE_NAME.fullmatch(value) is not None


def _is_property_name(name: str) -> bool:
    return name == "id" or _PROPERTY_NAME.fullmatch(name) is not None


def _id_type(value: Any) -> str | None:
    """The type part of a valid STIX identifier, else None."""
    if not isinstance(value, str) or len(value) > 290:
        return None
    match = _IDENTIFIER.fullmatch(value)
    return match[1] if match and 3 <= len(match[1]) <= 250 else None


def _version_key(value: Any) -> str | None:
    """A valid timestamp as fixed-width text whose string order is time order, else None."""
    return _timestamp_key(value) if isinstance(value, str) else None


_timestamp_key = stix_version_key


def _is_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {_show(value)}"


def _is_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {_show(value)}"


def _is_timestamp(value: Any) -> str | None:
    if _version_key(value) is not None:
        return None
    return (
        "must be an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z, at most "
        f"{MAX_FRACTION_DIGITS} fraction digits), got {_show(value)}"
    )


def _is_object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a JSON object, got {_show(value)}"


def _is_hashes(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return f"must be a non-empty object of hash values, got {_show(value)}"
    bad = next((k for k, v in value.items() if not isinstance(v, str)), None)
    return None if bad is None else f"value of {bad!r} must be a string"


def _matches(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and pattern.fullmatch(value):
            return None
        return f"must be {what}, got {_show(value)}"

    return check


def _number(integer: bool, low: float | None, high: float | None) -> Check:
    def check(value: Any) -> str | None:
        kinds = (int,) if integer else (int, float)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"must be {'an integer' if integer else 'a number'}, got {_show(value)}"
        if (low is not None and value < low) or (high is not None and value > high):
            return f"must be between {low} and {high}, got {value}"
        return None

    return check


def _one_of(allowed: list[str]) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in allowed:
            return None
        return f"must be one of {', '.join(allowed)}; got {_show(value)}"

    return check


def _reference(allowed: frozenset[str] | None = None, forbidden: frozenset[str] = frozenset()) -> Check:
    def check(value: Any) -> str | None:
        target = _id_type(value)
        if target is None:
            return f"must be a STIX identifier '<type>--<UUID>', got {_show(value)}"
        if allowed is not None and target not in allowed:
            return f"must reference {' or '.join(sorted(allowed))}, got {value}"
        if target in forbidden:
            return f"must not reference a {target}, got {value}"
        return None

    return check


def _list_of(item: Check) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return f"must be a non-empty list, got {_show(value)}"
        for index, element in enumerate(value):
            problem = item(element)
            if problem is not None:
                return f"item {index} {problem}"
        return None

    return check


def _object_with(checks: dict[str, Check], required: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"must be a JSON object, got {_show(value)}"
        for name in required:
            if name not in value:
                return f"lacks required '{name}'"
        for name, sub in checks.items():
            if name in value:
                problem = sub(value[name])
                if problem is not None:
                    return f"'{name}' {problem}"
        return None

    return check


def _check_granular_marking(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a JSON object, got {_show(value)}"
    selectors = value.get("selectors")
    if (
        not isinstance(selectors, list)
        or not selectors
        or not all(isinstance(s, str) and s for s in selectors)
    ):
        return "'selectors' must be a non-empty list of strings"
    if ("marking_ref" in value) == ("lang" in value):
        return "must have exactly one of 'marking_ref' and 'lang'"
    if "lang" in value:
        return _is_str(value["lang"])
    problem = _MARKING_REF(value["marking_ref"])
    return None if problem is None else f"'marking_ref' {problem}"


def _check_extensions(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return f"must be a non-empty JSON object, got {_show(value)}"
    for key, extension in value.items():
        if not (
            _EXTENSION_DEFINITION_ID.fullmatch(key) or _is_type_name(key) or _PROPERTY_NAME.fullmatch(key)
        ):
            return f"key {key!r} is neither 'extension-definition--<UUID>' nor an extension name"
        if not isinstance(extension, dict):
            return f"[{key!r}] must be a JSON object, got {_show(extension)}"
        kind = extension.get("extension_type")
        if kind is not None and kind not in _EXTENSION_TYPES:
            return f"[{key!r}] 'extension_type' {_show(kind)} is not a STIX extension type"
    return None


_MARKING_REF = _reference(frozenset({"marking-definition"}))
_OVERRIDES: dict[str, Check] = {  # where the spec says more than stix2's property classes
    "confidence": _number(True, 0, 100),
    "definition": _is_object,
    "extensions": _check_extensions,
    "granular_markings": _list_of(_check_granular_marking),
    "object_marking_refs": _list_of(_MARKING_REF),
}


def _generic_check(name: str) -> Check | None:
    """Checks for properties the type does not define (custom ones): only the _ref(s) rule."""
    if name.endswith("_ref"):
        return _ANY_REFERENCE
    if name.endswith("_refs"):
        return _ANY_REFERENCES
    return None


_ANY_REFERENCE = _reference()
_ANY_REFERENCES = _list_of(_ANY_REFERENCE)


# ---- tables derived from stix2's v21 classes -------------------------------------------------


def _compile(prop: Any) -> Check | None:
    """A check for one stix2 property definition (None: nothing to check here)."""
    if isinstance(prop, type) and issubclass(prop, _STIXBase):
        return _embedded(prop)
    if isinstance(prop, sp.ListProperty):
        return _list_of(_compile(prop.contained) or (lambda value: None))
    if isinstance(prop, sp.EmbeddedObjectProperty):
        return _embedded(prop.type)
    if isinstance(prop, sp.ReferenceProperty):
        concrete = frozenset(prop.specifics)
        if prop.auth_type == sp.ReferenceProperty._WHITELIST:
            return _reference(allowed=None if prop.generics else concrete)
        return _reference(forbidden=concrete)
    simple: list[tuple[type, Check]] = [
        (sp.TimestampProperty, _is_timestamp),
        (sp.BooleanProperty, _is_bool),
        (sp.HashesProperty, _is_hashes),
        (sp.DictionaryProperty, _is_object),
        (sp.ObservableProperty, _is_object),
        (sp.HexProperty, _matches(_HEX, "hexadecimal text")),
        (sp.BinaryProperty, _matches(_BASE64, "base64 text")),
    ]
    for kind, check in simple:
        if isinstance(prop, kind):
            return check
    if isinstance(prop, (sp.IntegerProperty, sp.FloatProperty)):
        return _number(isinstance(prop, sp.IntegerProperty), prop.min, prop.max)
    if isinstance(prop, sp.EnumProperty):
        return _one_of(list(prop.allowed))
    if isinstance(prop, sp.StringProperty):
        return _is_str
    return None  # TypeProperty, IDProperty, MarkingProperty, ...: checked elsewhere


def _property_checks(cls: type[Any]) -> dict[str, Check]:
    checks = {name: _compile(prop) for name, prop in cls._properties.items()}
    checks |= {name: check for name, check in _OVERRIDES.items() if name in checks}
    return {name: check for name, check in checks.items() if check is not None}


@functools.cache
def _embedded(cls: type[Any]) -> Check:
    required = tuple(name for name, prop in cls._properties.items() if prop.required)
    inner = _object_with(_property_checks(cls), required)
    if cls is not ExternalReference:
        return inner

    def external_reference(value: Any) -> str | None:
        problem = inner(value)
        if problem is None and not {"description", "url", "external_id"} & value.keys():
            return "needs 'description', 'url' or 'external_id' besides 'source_name'"
        return problem

    return external_reference


def _build_tables() -> tuple[dict[str, dict[str, Check]], dict[str, tuple[str, ...]]]:
    maps = STIX2_OBJ_MAPS["2.1"]
    classes = {
        typ: cls
        for typ, cls in {**maps["objects"], **maps["observables"]}.items()
        if cls.__module__.startswith("stix2.v21.") and typ != "bundle"
    }  # no custom ones
    checks = {typ: _property_checks(cls) for typ, cls in classes.items()}
    required: dict[str, tuple[str, ...]] = {}
    for typ, cls in classes.items():
        names = [name for name, prop in cls._properties.items() if getattr(prop, "required", False)]
        # stix2 fills these in itself, so it does not mark them required; the spec does.
        if typ not in SCO_TYPES:
            names += ["created"] + ([] if typ == "marking-definition" else ["modified"])
        if typ == "indicator":
            names.append("valid_from")
        required[typ] = tuple(dict.fromkeys(names))
    return checks, required


_CHECKS, _REQUIRED = _build_tables()
# Common properties mean the same on every type, custom ones included, so they are checked
# wherever they appear (a "confidence" on an SCO is still an integer 0-100).
_COMMON_CHECKS: dict[str, Check] = {
    name: check
    for name, check in {**_CHECKS["file"], **_CHECKS["indicator"]}.items()
    if name
    in {
        "created_by_ref",
        "created",
        "modified",
        "revoked",
        "labels",
        "confidence",
        "lang",
        "external_references",
        "object_marking_refs",
        "granular_markings",
        "extensions",
        "defanged",
    }
}
_CHECKS = {typ: {**_COMMON_CHECKS, **checks} for typ, checks in _CHECKS.items()}
