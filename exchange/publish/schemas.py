"""Request and response bodies for analyst publishing."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exchange.publish import observables
from policies.tlp import LEVELS, rank

_INCIDENT_ID = re.compile(
    r"incident--[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
# incident-determination-enum of the OASIS Incident Core Extension 2.0.
DETERMINATIONS = ("blocked", "failed-attempt", "false-positive", "low-value", "successful-attempt", "suspected")
Slug = Annotated[str, StringConstraints(min_length=1, max_length=64)]
VocabTerm = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")]


class ObservableIn(BaseModel):
    """A typed value (`type` + `value`) or an analyst's own STIX pattern; `name` is optional."""

    model_config = ConfigDict(extra="forbid")
    type: str | None = Field(None, examples=["domain-name"], description=f"one of {', '.join(observables.TYPES)}")
    value: str | None = Field(None, examples=["login-secure-bank.top"])
    pattern: str | None = Field(None, examples=["[url:value = 'http://x.top/a']"])
    name: str | None = Field(None, min_length=1, max_length=300)
    _observable: observables.Observable | None = PrivateAttr(None)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        return None if value is None else observables.canonical_type(value)

    @field_validator("value")
    @classmethod
    def _valid_value(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if value is None or kind is None:  # a bad or missing type is reported on its own
            return value
        return observables.normalise(kind, value).value

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        return None if value is None else observables.from_pattern(value).pattern

    @model_validator(mode="after")
    def _one_form(self) -> "ObservableIn":
        if self.pattern is not None:
            if self.type is not None or self.value is not None:
                raise ValueError("give either 'pattern' or 'type' and 'value', not both")
            self._observable = observables.from_pattern(self.pattern)
        elif self.type is None or self.value is None:
            raise ValueError("an observable needs 'type' and 'value', or a STIX 'pattern'")
        else:
            self._observable = observables.normalise(self.type, self.value)
        return self

    @property
    def observable(self) -> observables.Observable:
        assert self._observable is not None  # set by the validator
        return self._observable


class IncidentIn(BaseModel):
    """An incident in plain fields; the exchange builds the STIX 2.1 objects."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="an existing incident's id, to publish a new version of it")
    title: str = Field(min_length=1, max_length=1000, examples=["Phishing wave against bank customers"])
    description: str | None = Field(None, max_length=100_000)
    incident_types: list[VocabTerm] = Field(default_factory=list, max_length=50, examples=[["phishing"]])
    severity: Literal["low", "medium", "high", "critical"] | None = None
    determination: Literal[DETERMINATIONS] = "suspected"  # type: ignore[valid-type]
    investigation_status: VocabTerm = Field("open", description="new, open or closed (open vocabulary)")
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    tlp: str = Field(examples=["amber"], description=f"one of {', '.join(LEVELS)}")
    confidence: int | None = Field(None, ge=0, le=100)
    audience: list[Slug] = Field(default_factory=list, max_length=500,
                                 description="partner slugs; empty means every partner its agreement allows")
    collection: str = Field("incidents", min_length=1, max_length=64)
    observables: list[ObservableIn] = Field(default_factory=list, max_length=5000)

    @field_validator("id")
    @classmethod
    def _incident_id(cls, value: str | None) -> str | None:
        if value is not None and not _INCIDENT_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an incident id (incident--<lowercase RFC 4122 UUID>)")
        return value

    @field_validator("tlp")
    @classmethod
    def _tlp_level(cls, value: str) -> str:
        return LEVELS[rank(value)]  # rank raises ValueError naming the levels

    @model_validator(mode="after")
    def _seen_in_order(self) -> "IncidentIn":
        if self.first_seen and self.last_seen and self.last_seen < self.first_seen:
            raise ValueError(f"last_seen ({self.last_seen.isoformat()}) is before first_seen "
                             f"({self.first_seen.isoformat()})")
        return self


class PublishedObject(BaseModel):
    id: str
    type: str
    version: str
    status: Literal["new", "unchanged"] = Field(
        description="new: this version was stored now; unchanged: the same version was already stored")
    url: str = Field(description="the object's TAXII 2.1 URL")


class IncidentPublished(BaseModel):
    incident: str
    collection: str
    collection_id: str
    objects: list[PublishedObject]


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str | None = Field(None, description="only this collection (alias or id); default: every one")


class StoredVersion(BaseModel):
    collection: str
    collection_id: str
    status: Literal["new", "unchanged"]
    url: str


class VersionResult(BaseModel):
    id: str
    version: str
    revoked: bool
    changed: bool = Field(description="false when the object already was what was asked")
    collections: list[StoredVersion]


class SeenObject(BaseModel):
    id: str
    type: str
    version: str
    revoked: bool
    collections: list[str] = Field(description="aliases of the collections whose latest version this is")
    matched: list[str] | None = Field(None, description="for indicators: how the pattern mentions the value")
    via: list[str] | None = Field(None, description="for incidents: the indicators linking to them")
    object: dict[str, Any]


class LookupResult(BaseModel):
    value: str
    type: str
    indicators: list[SeenObject]
    sightings: list[SeenObject]
    incidents: list[SeenObject]
    truncated: bool = Field(description="true when more indicators matched than one answer holds")
