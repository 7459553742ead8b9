"""/api/v1/push and /api/v1/partners/{slug}/push-auth: administrators follow and start push
delivery, and set the credentials it uses on a partner's own TAXII server."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from exchange.audit import service as audit
from exchange.auth.deps import AdminUser, DbSession, require_admin
from exchange.context import FeedLauncherDep, SessionsDep, StrictJsonRoute
from exchange.database.core import session_scope
from exchange.partner.schemas import PartnerRead
from exchange.push import service
from exchange.push.schemas import PushAuthIn

router = APIRouter(
    prefix="/api/v1", tags=["push"], dependencies=[Depends(require_admin)], route_class=StrictJsonRoute
)


@router.get("/push/{slug}")
def push_progress(slug: str, db: DbSession) -> list[dict[str, object]]:
    """Push delivery to one partner, per collection: how far it got, failures in a row, the last error."""
    return service.push_status(db, slug)


@router.post("/push/{slug}/run", status_code=202)
def push_now(slug: str, feeds: FeedLauncherDep, sessions: SessionsDep, user: AdminUser) -> dict[str, object]:
    """Start a push delivery to the partner now; follow it at /push/{slug}."""
    feeds.start_push(slug, actor=user.credential_id)
    with session_scope(sessions, write=True) as db:
        audit.record(db, actor=user.credential_id, action="push.run", target=slug)
    return {"partner": slug, "status": "running"}


@router.put("/partners/{slug}/push-auth", response_model=PartnerRead)
def set_push_auth(slug: str, body: PushAuthIn, db: DbSession, user: AdminUser) -> PartnerRead:
    """Credentials push delivery uses on the partner's own TAXII server (write-only)."""
    auth = body.model_dump(exclude_none=True)
    return PartnerRead.model_validate(service.set_push_auth(db, slug, auth, actor=user.credential_id))


@router.delete("/partners/{slug}/push-auth", response_model=PartnerRead)
def clear_push_auth(slug: str, db: DbSession, user: AdminUser) -> PartnerRead:
    return PartnerRead.model_validate(service.set_push_auth(db, slug, None, actor=user.credential_id))
