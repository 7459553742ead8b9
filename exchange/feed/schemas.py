"""Feed requests and views for the REST API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from exchange.feed.kinds import KINDS as KINDS

Kind = Literal["taxii21", "stix-bundle", "csv", "text", "misp"]


class FeedAuth(BaseModel):
    """Credentials a feed needs: HTTP Basic, or headers (e.g. MISP's Authorization key)."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    headers: dict[str, str] | None = Field(default=None, repr=False)


class FeedCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Kind
    url: str
    collection: str
    every: str | None = Field(default=None, description='interval such as "15m", "1h", "1d"')
    cron: str | None = Field(default=None, description='crontab expression, e.g. "0 */6 * * *"')
    tlp: str = Field(default="amber", description="TLP for objects the feed does not mark")
    confidence: int | None = Field(default=None, ge=0, le=100)
    warninglists: bool = False
    ca_bundle: str | None = Field(default=None, description="PEM certificates to trust for this feed")
    timeout: float = Field(default=30.0, gt=0, le=600)
    options: dict[str, Any] = Field(default_factory=dict)
    auth: FeedAuth | None = None
    enabled: bool = True


class FeedUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    collection: str | None = None
    every: str | None = None
    cron: str | None = None
    tlp: str | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    warninglists: bool | None = None
    ca_bundle: str | None = None
    timeout: float | None = Field(default=None, gt=0, le=600)
    options: dict[str, Any] | None = None
    auth: FeedAuth | None = None
    enabled: bool | None = None


class FeedRunRead(BaseModel):
    id: int
    trigger: str
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    fetched: int
    new: int
    updated: int
    unchanged: int
    dropped: int
    failed: int
    error: str | None
    failures: list[dict[str, str]]


class FeedRead(BaseModel):
    name: str
    kind: str
    url: str
    collection: str
    every: str | None
    cron: str | None
    tlp: str
    confidence: int | None
    warninglists: bool
    ca_bundle: bool
    timeout: float
    options: dict[str, Any]
    has_auth: bool
    enabled: bool
    health: str
    consecutive_failures: int
    running: bool
    next_run_at: datetime | None
    last_run: FeedRunRead | None
    created_by: str
    created_at: datetime
