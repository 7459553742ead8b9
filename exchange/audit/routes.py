"""/api/v1/audit and /api/v1/objects/{id}/recipients."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from exchange.audit import service
from exchange.auth.deps import AdminUser, DbSession, StaffUser
from exchange.disclosure import service as disclosure

router = APIRouter(prefix="/api/v1", tags=["audit and disclosure"])


@router.get("/audit")
def list_audit(
    db: DbSession,
    user: AdminUser,
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


@router.get("/audit/verify")
def verify_audit(db: DbSession, user: AdminUser) -> dict[str, Any]:
    """Walk the hash chain; `ok` is false with the problems found when anything was tampered with."""
    report = service.verify(db)
    return {"ok": report.ok, "events": report.events, "problems": report.problems}


@router.get("/objects/{stix_id}/recipients")
def recipients(stix_id: str, db: DbSession, user: StaffUser) -> dict[str, Any]:
    """Which partner credentials received which version of an object, from the disclosure ledger."""
    return disclosure.recipients(db, stix_id)
