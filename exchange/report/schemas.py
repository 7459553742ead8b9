"""Response bodies of the reports (what the REST API, the CLI and the pages show)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class ReciprocityCell(BaseModel):
    """One partner's figures in one collection at one TLP level."""

    collection: str
    tlp: str
    contributed: int = Field(description="object versions the partner stored (accepted submissions)")
    received: int = Field(description="distinct object versions the partner received (disclosure ledger)")
    deliveries: int = Field(description="ledger rows: a version received twice counts twice here")


class PartnerReciprocity(BaseModel):
    partner: str
    name: str
    status: str
    contributed: int
    received: int
    deliveries: int
    ratio: float | None = Field(description="contributed / received; null when it received nothing")
    cells: list[ReciprocityCell]


class ReciprocityReport(BaseModel):
    since: datetime
    until: datetime = Field(description="exclusive")
    partners: list[PartnerReciprocity]
    contributed: int
    received: int


class WindowFigures(BaseModel):
    days: int
    contributed: int
    received: int
    ratio: float | None


class PendingRevocation(BaseModel):
    """An object the partner received whose revoked version it has not received yet."""

    stix_id: str
    collection: str
    revoked_version: str
    last_received_version: str


class PartnerDashboard(BaseModel):
    partner: str
    name: str
    status: str
    windows: list[WindowFigures]
    last_pull: datetime | None = Field(description="the last TAXII pull recorded in the ledger")
    last_delivery: datetime | None = Field(description="the last delivery on any channel")
    agreement_status: str | None
    agreement_valid_until: date | None
    agreement_days_left: int | None
    agreement_expiring: bool = Field(description="the agreement ends in under 60 days (or has ended)")
    revocations_not_received: int
    revocations_sample: list[PendingRevocation]


class FeedHealth(BaseModel):
    name: str
    kind: str
    enabled: bool
    health: str
    consecutive_failures: int
    last_run_status: str | None
    last_run_started_at: datetime | None
    last_run_finished_at: datetime | None
    last_run_new: int | None
    last_run_failed: int | None
    last_error: str | None


class DayCount(BaseModel):
    day: date
    versions: int = Field(description="object versions added that day (UTC)")
    new_objects: int = Field(description="of which first versions of an object in its collection")


class Dashboard(BaseModel):
    generated_at: datetime
    partners: list[PartnerDashboard]
    feeds: list[FeedHealth]
    added_per_day: list[DayCount]


class IncidentObject(BaseModel):
    stix_id: str
    type: str
    collection: str
    tlp: str
    latest_version: str
    revoked: bool
    versions: int


class Receipt(BaseModel):
    """A partner's receipt of one version of one of the incident's objects."""

    partner: str
    stix_id: str
    version: str
    channel: str
    first_received: datetime
    last_received: datetime
    times: int


class PartnerSighting(BaseModel):
    partner: str
    sighting_id: str
    sighting_of: str
    collection: str
    count: int | None
    last_seen: str | None


class IncidentDelivery(BaseModel):
    incident: str
    objects: list[IncidentObject]
    receipts: list[Receipt]
    sightings: list[PartnerSighting]
    revocations_not_received: list[dict[str, str]] = Field(
        description="partner, stix_id, revoked_version: received an earlier version, not the revocation"
    )
