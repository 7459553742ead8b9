"""/api/v1/agreements: apply, read, history, diff, status and preview (administrators)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel

from exchange.agreement import service
from exchange.auth.deps import AdminUser, DbSession, require_admin
from exchange.database.types import utcnow
from exchange.sharing import preview as preview_service

router = APIRouter(prefix="/api/v1/agreements", tags=["agreements"], dependencies=[Depends(require_admin)])


class AppliedRead(BaseModel):
    partner: str
    version: int
    changed: bool
    changes: list[dict[str, Any]]
    warnings: list[str] = []  # e.g. a type name STIX does not define, with the nearest that it does


class StatusIn(BaseModel):
    status: Literal["draft", "active", "suspended"]


class VersionRead(BaseModel):
    version: int
    status: str
    valid_from: str
    valid_until: str
    created_by: str
    created_at: str
    document: dict[str, Any]


@router.put("", response_model=AppliedRead)
def apply_agreement(db: DbSession, user: AdminUser, body: dict[str, Any] = Body(...)) -> AppliedRead:
    """Create or change an agreement (same shape as the YAML files); each change is a version."""
    applied = service.apply(db, body, actor=user.credential_id)
    return AppliedRead(**applied.__dict__)


@router.get("")
def list_agreements(db: DbSession) -> list[dict[str, Any]]:
    return service.export_all(db)


@router.get("/{partner}")
def get_agreement(partner: str, db: DbSession) -> dict[str, Any]:
    return service.current_document(db, partner)


@router.get("/{partner}/versions", response_model=list[VersionRead])
def list_versions(partner: str, db: DbSession) -> list[VersionRead]:
    import orjson

    return [
        VersionRead(
            version=v.version,
            status=v.status,
            valid_from=v.valid_from.isoformat(),
            valid_until=v.valid_until.isoformat(),
            created_by=v.created_by,
            created_at=v.created_at.isoformat(),
            document=orjson.loads(v.document),
        )
        for v in service.history(db, partner)
    ]


@router.get("/{partner}/diff")
def diff_versions(
    partner: str, db: DbSession, from_: int = Query(alias="from"), to: int = Query()
) -> list[dict[str, Any]]:
    return service.diff(db, partner, from_, to)


@router.post("/{partner}/status", response_model=AppliedRead)
def set_status(partner: str, body: StatusIn, db: DbSession, user: AdminUser) -> AppliedRead:
    return AppliedRead(**service.set_status(db, partner, body.status, actor=user.credential_id).__dict__)


@router.get("/{partner}/preview")
def preview_current(partner: str, db: DbSession) -> dict[str, Any]:
    """What this partner would be served now under its current agreement."""
    doc = service.validate(db, service.current_document(db, partner))
    return preview_service.preview(db, doc, now=utcnow())


@router.post("/preview")
def preview_draft(db: DbSession, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """What a partner would see under a draft agreement (nothing is stored)."""
    return preview_service.preview(db, service.validate(db, body), now=utcnow())
