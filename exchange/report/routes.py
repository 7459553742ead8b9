"""/api/v1/reports/... and /api/v1/incidents/{id}/delivery: figures for the CERT's staff."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from exchange.auth.deps import DbSession, require_staff
from exchange.context import StrictJsonRoute
from exchange.database.types import utcnow
from exchange.report import service
from exchange.report.schemas import Dashboard, IncidentDelivery, ReciprocityReport

router = APIRouter(
    prefix="/api/v1", tags=["reports"], dependencies=[Depends(require_staff)], route_class=StrictJsonRoute
)


@router.get("/reports/reciprocity", response_model=ReciprocityReport)
def reciprocity(
    db: DbSession,
    since: str | None = Query(
        None, description="a date (2026-09-01) or an ISO date and time; default: 90 days before until"
    ),
    until: str | None = Query(
        None, description="a date (the whole day counts) or an ISO date and time; default: now"
    ),
) -> ReciprocityReport:
    """Per partner, by collection and TLP: object versions it contributed and received, and the ratio."""
    start, end = service.window(since, until, now=utcnow())
    return service.reciprocity(db, since=start, until=end)


@router.get("/reports/dashboard", response_model=Dashboard)
def dashboard(db: DbSession, days: int = Query(30, ge=1, le=366)) -> Dashboard:
    """Per partner (30 and 90 days, last pull, agreement end, revocations not received), feed
    health, and object versions added per day over the last `days` days."""
    return service.dashboard(db, now=utcnow(), days=days)


@router.get("/incidents/{incident_id}/delivery", response_model=IncidentDelivery)
def incident_delivery(incident_id: str, db: DbSession) -> IncidentDelivery:
    """An incident's objects and their TLP, which partner received which version, partners'
    sightings of them, and who received an object but not yet its revocation."""
    return service.incident_delivery(db, incident_id)
