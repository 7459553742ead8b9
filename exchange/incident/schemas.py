"""The analyst's publish request: an incident in plain fields and its observables."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exchange.database.types import to_utc
from policies.tlp import LEVELS, normalise


class ObservableIn(BaseModel):
    """Either a typed value, or a raw STIX pattern (with an optional name)."""

    model_config = ConfigDict(extra="forbid")
    type: str | None = Field(None, examples=["domain-name"])
    value: str | None = Field(None, examples=["login-secure-bank.top"])
    pattern: str | None = Field(None, examples=["[url:value = 'http://x.top/a']"])
    name: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ObservableIn:
        if self.pattern is None and (self.type is None or self.value is None):
            raise ValueError("an observable needs 'type' and 'value', or a 'pattern'")
        if self.pattern is not None and (self.type is not None or self.value is not None):
            raise ValueError("give either 'type' and 'value' or 'pattern', not both")
        return self


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="an existing incident id, to publish a new version of it")
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    incident_types: list[str] = []
    severity: Literal["low", "medium", "high", "critical"] | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    tlp: str = Field(description=f"one of {', '.join(LEVELS)}")
    confidence: int | None = Field(None, ge=0, le=100)
    audience: list[str] = Field(
        [], description="partner slugs; empty means every partner the agreements allow"
    )
    collection: str = "incidents"
    observables: list[ObservableIn] = []

    @field_validator("tlp")
    @classmethod
    def _tlp(cls, value: str) -> str:
        return normalise(value)

    @field_validator("first_seen", "last_seen")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Naive ones are refused by _window; an aware one must have a UTC time to be written.
        return to_utc(value) if value is not None and value.tzinfo is not None else value

    @model_validator(mode="after")
    def _window(self) -> IncidentIn:
        for stamp in (self.first_seen, self.last_seen):
            if stamp is not None and stamp.tzinfo is None:
                raise ValueError("first_seen and last_seen need a time zone, e.g. 2026-11-20T08:00:00Z")
        if self.first_seen and self.last_seen and self.last_seen < self.first_seen:
            raise ValueError("last_seen is before first_seen")
        return self


class PublishedObject(BaseModel):
    id: str
    type: str
    url: str


class Published(BaseModel):
    incident: str
    collection: str
    objects: list[PublishedObject]


class RevokeIn(BaseModel):
    """A revocation; `collection` (an alias or id) narrows it to one collection holding the object."""

    model_config = ConfigDict(extra="forbid")
    collection: str | None = Field(None, min_length=1, max_length=64)
