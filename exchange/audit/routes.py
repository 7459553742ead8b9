"""/api/v1/audit and /api/v1/objects/{id}/recipients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from exchange.audit import service
from exchange.auth.deps import PrimaryDbSession, require_admin, require_staff
from exchange.context import SettingsDep, StrictJsonRoute
from exchange.disclosure import service as disclosure

router = APIRouter(
    prefix="/api/v1",
    tags=["audit and disclosure"],
    dependencies=[Depends(require_staff)],
    route_class=StrictJsonRoute,
)


@router.get("/audit", dependencies=[Depends(require_admin)])
def list_audit(
    db: PrimaryDbSession,
    limit: int = Query(100, ge=1, le=1000),
    action: str | None = None,
    before: int | None = Query(None, ge=1, le=2**63 - 1),
) -> list[dict[str, Any]]:
    """Audit events, newest first (page with `before` = the last seq seen)."""
    import orjson

    return [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "details": orjson.loads(e.details),
            "hash": e.hash,
        }
        for e in service.list_(db, limit=limit, action=action, before=before)
    ]


@router.get("/audit/verify", dependencies=[Depends(require_admin)])
def verify_audit(db: PrimaryDbSession) -> dict[str, Any]:
    """Walk the hash chain and check its signatures; `ok` is false with the problems found when
    anything was tampered with; `proves` and `cannot_prove` say what the answer means."""
    report = service.verify(db)
    return {
        "ok": report.ok,
        "events": report.events,
        "problems": report.problems,
        "proves": report.proves,
        "cannot_prove": report.cannot_prove,
    }


@router.get("/audit/checkpoint", dependencies=[Depends(require_admin)])
def audit_checkpoint(db: PrimaryDbSession, settings: SettingsDep) -> dict[str, Any]:
    """A signed checkpoint of the trail's head, to keep outside the exchange (`exchange audit
    verify --checkpoint FILE` checks the trail against it later)."""
    return service.export_checkpoint(db, issuer=settings.identity_id)


@router.get("/objects/{stix_id}/recipients")
def recipients(stix_id: str, db: PrimaryDbSession) -> dict[str, Any]:
    """Which partner credentials received which version of an object, from the disclosure ledger."""
    return disclosure.recipients(db, stix_id)
