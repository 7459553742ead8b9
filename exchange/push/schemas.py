"""Request bodies for push delivery."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PushAuthIn(BaseModel):
    """Credentials for the partner's own TAXII server: Basic, or headers such as Authorization."""

    model_config = ConfigDict(extra="forbid")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    headers: dict[str, str] | None = Field(default=None, repr=False)
