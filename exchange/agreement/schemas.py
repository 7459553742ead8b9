"""Response bodies of the agreement routes: previews, checks, versions and their diffs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    field: str
    reason: str


class CheckRead(BaseModel):
    """A document checked without saving: problems next to their fields, and warnings."""

    valid: bool
    problems: list[Problem]
    warnings: list[str]
    document: dict[str, Any] | None = Field(description="the document as it would be stored, when valid")


class PreviewChange(BaseModel):
    """Compared with what the agreement in force serves now."""

    model_config = ConfigDict(extra="allow")
    becomes_visible: int
    becomes_withheld: int
    withheld_by: dict[str, int] = Field(
        description="why the newly withheld are withheld: tlp, type, confidence, embargo, audience, "
        "references, collection (the draft drops it), ... (an object may count under several)"
    )


class PreviewCollection(BaseModel):
    model_config = ConfigDict(extra="allow")
    collection: str
    granted: bool
    total: int
    by_type: dict[str, int]
    by_tlp: dict[str, int]
    sample: list[dict[str, Any]]
    withheld: int = Field(description="latest versions in the collection the partner would not see")
    withheld_by: dict[str, int] = Field(
        description="per reason; an object withheld for two counts under both"
    )
    change: PreviewChange


class PreviewRead(BaseModel):
    """What a partner would be served now under an agreement (a draft is previewed as if active)."""

    model_config = ConfigDict(extra="allow")
    partner: str
    status: str
    previewed_as_active: bool
    partner_status: str
    warnings: list[str]
    collections: list[PreviewCollection]
    total: int
    withheld: int
    withheld_by: dict[str, int]
    compared_with: str
    unchanged: bool = Field(description="the document is the agreement stored now")
    change: PreviewChange


class VersionYaml(BaseModel):
    partner: str
    version: int
    status: str
    created_by: str
    created_at: str
    document: dict[str, Any]
    yaml: str


class VersionDiffRead(BaseModel):
    partner: str
    from_version: int
    to_version: int
    changes: list[dict[str, Any]]
    unified: str = Field(description="unified diff of the two versions' canonical YAML")
