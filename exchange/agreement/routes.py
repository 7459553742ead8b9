"""/api/v1/agreements: apply, read, history, diff, status and preview (administrators)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel

from exchange.agreement import service
from exchange.agreement.schemas import CheckRead, PreviewRead, Problem, VersionDiffRead, VersionYaml
from exchange.auth.deps import AdminUser, DbSession, require_admin
from exchange.context import StrictJsonRoute
from exchange.database.types import utcnow
from exchange.sharing import preview as preview_service

router = APIRouter(
    prefix="/api/v1/agreements",
    tags=["agreements"],
    dependencies=[Depends(require_admin)],
    route_class=StrictJsonRoute,
)


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


@router.get("/{partner}/versions/diff", response_model=VersionDiffRead)
def diff_versions_unified(
    partner: str,
    db: DbSession,
    from_: int = Query(alias="from", ge=1, le=2**31 - 1),
    to: int = Query(ge=1, le=2**31 - 1),
) -> VersionDiffRead:
    """The fields that changed between two versions and a unified diff of their YAML."""
    found = service.version_diff(db, partner, from_, to)
    return VersionDiffRead(**found.__dict__)


@router.get("/{partner}/versions/{version}", response_model=VersionYaml)
def get_version(partner: str, version: int, db: DbSession) -> VersionYaml:
    """One version of a partner's agreement, as JSON and as its canonical YAML."""
    import orjson

    found = service.get_version(db, partner, version)
    document = orjson.loads(found.document)
    return VersionYaml(
        partner=partner,
        version=found.version,
        status=found.status,
        created_by=found.created_by,
        created_at=found.created_at.isoformat(),
        document=document,
        yaml=service.canonical_yaml(document),
    )


@router.get("/{partner}/diff", response_model=list[dict[str, Any]])
def diff_versions(
    partner: str,
    db: DbSession,
    from_: int = Query(alias="from", ge=1, le=2**31 - 1),
    to: int = Query(ge=1, le=2**31 - 1),
) -> list[dict[str, Any]]:
    return service.diff(db, partner, from_, to)


@router.post("/{partner}/status", response_model=AppliedRead)
def set_status(partner: str, body: StatusIn, db: DbSession, user: AdminUser) -> AppliedRead:
    return AppliedRead(**service.set_status(db, partner, body.status, actor=user.credential_id).__dict__)


@router.get("/{partner}/preview", response_model=PreviewRead)
def preview_current(partner: str, db: DbSession) -> dict[str, Any]:
    """What this partner would be served now under its current agreement."""
    doc = service.validate(db, service.current_document(db, partner))
    return preview_service.preview(db, doc, now=utcnow())


@router.post("/preview", response_model=PreviewRead)
def preview_draft(db: DbSession, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """What a partner would see under a draft agreement (nothing is stored), how many objects it
    makes visible or withholds compared with the agreement in force and why, and warnings."""
    return preview_service.preview(db, service.validate(db, body), now=utcnow())


@router.post("/check", response_model=CheckRead)
def check_draft(db: DbSession, body: Any = Body(...)) -> CheckRead:
    """Validate a draft without saving it: each problem with its field, and warnings (such as a
    type name STIX does not define, with the nearest one it does)."""
    checked = service.check(db, body)
    return CheckRead(
        valid=checked.valid,
        problems=[Problem(field=f, reason=r) for f, r in checked.problems],
        warnings=checked.warnings,
        document=checked.document,
    )
