"""Sharing agreements as documents: the schema, validation against what exists, and diffs.

Fail closed: unknown fields, collections, partners, TLP levels and malformed durations are
errors, never ignored or guessed at. Pure module: standard library, pydantic and policies.*.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from policies.duration import MAX_DURATION, format_duration, parse_duration
from policies.tlp import LEVELS, normalise

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}[a-z0-9]", re.ASCII)
# STIX 2.1 section 3.1: a-z, 0-9 and single hyphens, 3 to 250 characters.
_STIX_TYPE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.ASCII)
# One step of a redaction path: a property name or an extension key ("extension-definition--...").
_PATH_STEP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*", re.ASCII)
# What a redaction may never remove: what makes an object an object, and what tells the partner
# how it may share it (markings) or that it was withdrawn (revoked).
PROTECTED_PROPERTIES = frozenset(
    {
        "id",
        "type",
        "spec_version",
        "created",
        "modified",
        "revoked",
        "object_marking_refs",
        "granular_markings",
    }
)
MIN_PUSH_INTERVAL = timedelta(minutes=1)


def _stix_type(value: str) -> str:
    if not (3 <= len(value) <= 250 and _STIX_TYPE.fullmatch(value)):
        raise ValueError(f"{value!r} is not a STIX type name (3-250 characters: a-z, 0-9, single hyphens)")
    return value


def _collection_alias(value: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError(f"{value!r} is not a collection alias")
    return value


def _tlp_level(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a TLP level must be one of {', '.join(LEVELS)}, not {value!r}")
    return normalise(value)  # which names the allowed levels when it refuses


def _duration(value: Any, info: ValidationInfo) -> timedelta:
    # A version an older release stored with a longer duration stays readable: refusing it
    # would break every request that reads the agreement (new input is held to the maximum).
    stored = bool(info.context and info.context.get("stored"))
    return parse_duration(value, maximum=None if stored else MAX_DURATION)


def _redact_path(value: str) -> str:
    steps = value.split(".")
    if not all(_PATH_STEP.fullmatch(step) for step in steps):
        raise ValueError(f"{value!r} is not a property name or dotted path such as 'extensions.x-ext.field'")
    if steps[0] in PROTECTED_PROPERTIES:
        raise ValueError(
            f"{steps[0]!r} may not be redacted ({', '.join(sorted(PROTECTED_PROPERTIES))} "
            "always stay on an object)"
        )
    return value


def _strict_date(value: Any) -> Any:
    # Lax pydantic would read 1709596800 or "2024-03-05T00:00:00" as a date; an agreement's
    # window is written as a calendar date and nothing else.
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value, re.ASCII):
        return value
    raise ValueError(f"expected a date written YYYY-MM-DD, not {value!r}")


def _unique(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value)
    return values


CollectionAlias = Annotated[StrictStr, AfterValidator(_collection_alias)]
Collections = Annotated[list[CollectionAlias], Field(min_length=1), AfterValidator(_unique)]
StixTypes = Annotated[list[Annotated[StrictStr, AfterValidator(_stix_type)]], AfterValidator(_unique)]
TlpLevel = Annotated[str, BeforeValidator(_tlp_level)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
CalendarDate = Annotated[date, BeforeValidator(_strict_date)]
RedactPath = Annotated[StrictStr, AfterValidator(_redact_path)]


class ReadSection(BaseModel):
    """What the partner may pull."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collections: Collections
    max_tlp: TlpLevel
    types: StixTypes | None = None
    min_confidence: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    embargo: Duration | None = None
    redact: Annotated[list[RedactPath], AfterValidator(_unique)] = []
    anonymize_source: StrictBool = False

    @field_serializer("embargo", when_used="json")
    def _write_embargo(self, value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)


def _partner_slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a partner slug")
    return value


PartnerSlug = Annotated[StrictStr, AfterValidator(_partner_slug)]
RelayTo = Literal["none", "all"] | Annotated[list[PartnerSlug], AfterValidator(_unique)]


class WriteSection(BaseModel):
    """What the partner may post, and how far what it sends may travel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collections: Collections
    types: StixTypes | None = None
    require_signature: StrictBool = False
    # Which other partners may receive what this partner sends (originator control): "none"
    # (the default), "all", or a list of partner slugs. Never back to the partner itself.
    relay_to: RelayTo = "none"
    # Relayed copies name the exchange, not this partner, as their creator.
    anonymize_on_relay: StrictBool = False


class PushSection(BaseModel):
    """Push delivery to the partner's own TAXII server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: StrictStr
    every: Duration
    collection: CollectionAlias | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        # Messages never repeat the URL: whatever it carries, they are shown and logged.
        if value != value.strip() or any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ValueError("a push URL must not contain spaces or control characters")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a malformed port)
        except ValueError as exc:
            raise ValueError(f"the push URL is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(
                f"a push URL must start with https:// or http://, not {parts.scheme or '(none)'}:"
            )
        if not parts.hostname:
            raise ValueError("a push URL must name a host")
        if parts.username is not None or parts.password is not None:
            # Agreements are versioned and shown in history and diffs: no secrets in them.
            raise ValueError("a push URL must not carry credentials; register them with the partner")
        if ("?" in value or "#" in value) and _is_new(info):
            # Any query, not only secret-looking names: names say nothing (pw=, p=, sig=...), and a
            # TAXII 2.1 collection URL has none. Only new documents: stored versions stay readable.
            raise ValueError(
                "a push URL must carry no query string or fragment (a TAXII collection URL has "
                "none; agreements are versioned and shown in history, diffs and the audit trail); "
                "give a key as push credentials instead: PUT /api/v1/partners/{slug}/push-auth "
                "or `exchange partner push-auth`"
            )
        return value

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: timedelta) -> timedelta:
        if value < MIN_PUSH_INTERVAL:
            raise ValueError(f"push interval {format_duration(value)} is shorter than the minimum of 1m")
        return value

    @field_serializer("every", when_used="json")
    def _write_every(self, value: timedelta) -> str:
        return format_duration(value)


class RateLimitSection(BaseModel):
    """How fast each of the partner's credentials may call (instead of the exchange's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_minute: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    # Requests a credential may make at once after a quiet spell; default a tenth of a minute's.
    burst: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = None

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else max(1, self.per_minute // 10)


class AgreementDoc(BaseModel):
    """One version of a partner's sharing agreement, as administrators write it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner: StrictStr
    title: StrictStr
    valid_from: CalendarDate
    valid_until: CalendarDate
    status: Literal["draft", "active", "suspended"] = "draft"
    read: ReadSection | None = None
    write: WriteSection | None = None
    push: PushSection | None = None
    rate_limit: RateLimitSection | None = None

    @field_validator("partner")
    @classmethod
    def _check_partner(cls, value: str) -> str:
        if not SLUG.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a partner slug (3-64 characters: a-z, 0-9 and "
                "hyphens, not starting or ending with a hyphen)"
            )
        return value

    @field_validator("title")
    @classmethod
    def _check_title(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the title must not be blank")
        return value

    @field_validator("valid_until")
    @classmethod
    def _check_window(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("valid_from")
        if start is not None and value < start:
            raise ValueError(
                f"valid_until {value.isoformat()} is before valid_from {start.isoformat()} "
                "(an end before the start)"
            )
        return value

    @field_validator("push")
    @classmethod
    def _check_push(cls, value: PushSection | None, info: ValidationInfo) -> PushSection | None:
        if value is None or "read" not in info.data:
            return value  # "read" absent from data: it failed and has its own error
        read: ReadSection | None = info.data["read"]
        if read is None:
            raise ValueError("push needs a read section: only what the partner may read is pushed")
        if value.collection is not None and value.collection not in read.collections:
            raise _error_at(
                "collection",
                f"push collection {value.collection!r} is not one of the read "
                f"collections ({', '.join(read.collections)})",
            )
        return value

    def to_document(self) -> dict[str, Any]:
        """JSON-ready form (ISO dates, compact durations) that validates back to an equal doc."""
        return self.model_dump(mode="json", exclude_none=True)


# The validation context of a document being written (validate_agreement); stored versions are
# read without it, so a rule added later never makes an existing version unreadable.
NEW_DOCUMENT: dict[str, Any] = {"new_document": True}


def _is_new(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("new_document"))


def _error_at(subpath: str, reason: str) -> PydanticCustomError:
    """An error about a part of the value being validated (pydantic would name only the whole)."""
    return PydanticCustomError("agreement_field", "{reason}", {"reason": reason, "subpath": subpath})


class AgreementError(ValueError):
    """An agreement document was refused; `problems` lists (field path, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        lines = [f"{path}: {reason}" if path else reason for path, reason in self.problems]
        if len(lines) == 1:
            return prefix + lines[0]
        head = f"{prefix}{len(lines)} problems in the agreement:"
        return "\n".join([head, *(f"  - {line}" for line in lines)])

    def __str__(self) -> str:
        return self._message()


def validate_agreement(
    data: dict[str, Any],
    *,
    known_collections: set[str],
    known_partners: set[str] | None = None,
    source: str | None = None,
) -> AgreementDoc:
    """A validated agreement, or one AgreementError listing every problem found."""
    if not isinstance(data, dict):
        raise AgreementError([("", "an agreement must be a mapping of fields")], source=source)
    problems: list[tuple[str, str]] = []
    doc: AgreementDoc | None = None
    try:
        doc = AgreementDoc.model_validate(data, context=NEW_DOCUMENT)
    except ValidationError as exc:
        problems.extend(_problem(error) for error in exc.errors())
    # Checked on the raw document so these show up alongside schema errors elsewhere.
    partner = data.get("partner")
    if known_partners is not None and isinstance(partner, str) and partner not in known_partners:
        problems.append(("partner", f"unknown partner {partner!r}"))
    for section in ("read", "write"):
        body = data.get(section)
        names = body.get("collections") if isinstance(body, dict) else None
        if isinstance(names, list):
            for index, name in enumerate(names):
                if isinstance(name, str) and name not in known_collections:
                    problems.append((f"{section}.collections[{index}]", f"unknown collection {name!r}"))
    write = data.get("write")
    relay = write.get("relay_to") if isinstance(write, dict) else None
    if isinstance(relay, list):
        for index, name in enumerate(relay):
            if not isinstance(name, str):
                continue
            if name == partner:
                problems.append((f"write.relay_to[{index}]", "a partner's objects never go back to it"))
            elif known_partners is not None and name not in known_partners:
                problems.append((f"write.relay_to[{index}]", f"unknown partner {name!r}"))
    push = data.get("push")
    name = push.get("collection") if isinstance(push, dict) else None
    if isinstance(name, str) and name not in known_collections:
        problems.append(("push.collection", f"unknown collection {name!r}"))
    if problems or doc is None:
        raise AgreementError(problems or [("", "invalid agreement")], source=source)
    return doc


_MESSAGES = {
    "missing": "required field is missing",
}


def _problem(error: Any) -> tuple[str, str]:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    ctx = error.get("ctx") or {}
    if ctx.get("subpath"):
        path = f"{path}.{ctx['subpath']}" if path else ctx["subpath"]
    kind = error["type"]
    if kind == "extra_forbidden":
        reason = f"unknown field {error['loc'][-1]!r}" if error["loc"] else "unknown field"
    elif kind in _MESSAGES:
        reason = _MESSAGES[kind]
    elif kind == "value_error" and "error" in ctx:
        reason = str(ctx["error"])
    else:
        reason = error["msg"]
    return path, reason


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed between two agreement documents, one entry per changed leaf field.

    Sections are flattened to dotted paths ("read.max_tlp"); lists compare as whole values; a
    field absent on one side shows as None there.
    """
    changes: list[dict[str, Any]] = []
    _diff(old or {}, new or {}, "", changes)
    return changes


def _diff(old: Any, new: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(old, dict) or isinstance(new, dict):
        left = old if isinstance(old, dict) else {}
        right = new if isinstance(new, dict) else {}
        if not isinstance(old, dict) and old is not None:
            out.append({"path": path, "old": old, "new": None})
        for key in [*left, *(k for k in right if k not in left)]:
            _diff(left.get(key), right.get(key), f"{path}.{key}" if path else key, out)
        if not isinstance(new, dict) and new is not None:
            out.append({"path": path, "old": None, "new": new})
        return
    if old != new or type(old) is not type(new):
        out.append({"path": path, "old": old, "new": new})


# Every object type STIX 2.1 defines (sections 4-6 and 7.1-7.3); anything else is custom.
STIX_TYPES = frozenset(
    {
        "attack-pattern", "campaign", "course-of-action", "grouping", "identity", "incident",
        "indicator", "infrastructure", "intrusion-set", "location", "malware", "malware-analysis",
        "note", "observed-data", "opinion", "report", "threat-actor", "tool", "vulnerability",
        "relationship", "sighting",
        "artifact", "autonomous-system", "directory", "domain-name", "email-addr", "email-message",
        "file", "ipv4-addr", "ipv6-addr", "mac-addr", "mutex", "network-traffic", "process",
        "software", "url", "user-account", "windows-registry-key", "x509-certificate",
        "extension-definition", "language-content", "marking-definition",
    }
)  # fmt: skip


def type_warnings(doc: AgreementDoc) -> list[str]:
    """Type names STIX does not define, with the nearest one it does: likely typos, but legal
    (custom types are allowed), so a warning rather than a refusal."""
    import difflib

    warnings = []
    for name, section in (("read", doc.read), ("write", doc.write)):
        for index, typ in enumerate(getattr(section, "types", None) or ()):
            if typ in STIX_TYPES:
                continue
            if typ.startswith("x-"):
                warnings.append(
                    f"{name}.types[{index}]: {typ!r} is a custom type, not one STIX 2.1 defines "
                    "(kept: it matches only custom objects of that type)"
                )
                continue
            near = difflib.get_close_matches(typ, sorted(STIX_TYPES), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            warnings.append(
                f"{name}.types[{index}]: {typ!r} is not a type STIX 2.1 defines{hint} "
                "(kept: it matches only custom objects of that type)"
            )
    return warnings


def load_agreement_yaml(text: str, *, source: str | None = None) -> Any:
    """Parse one agreement file; any YAML problem is an AgreementError naming line and column.

    YAML would turn an unquoted `valid_from: 2024-03-05` into a date itself, and an impossible
    one (2024-13-45) into a ValueError from deep inside the parser. Dates are kept as the text
    written, so the schema checks them like any other field and names the field that is wrong.
    """
    import yaml

    class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types here
        pass

    _Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_scalar)
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AgreementError([("", f"not valid YAML{where}: {exc.problem or exc}")], source=source) from None
    except (yaml.YAMLError, ValueError) as exc:
        raise AgreementError([("", f"not valid YAML: {exc}")], source=source) from None
