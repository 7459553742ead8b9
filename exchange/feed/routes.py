"""/api/v1/feeds: administrators add, change, run and inspect feeds."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from exchange.auth.deps import AdminUser, DbSession, PrimaryDbSession, require_admin
from exchange.context import FeedLauncherDep, StrictJsonRoute
from exchange.feed import service
from exchange.feed.schemas import FeedCreate, FeedRead, FeedRunRead, FeedUpdate

router = APIRouter(
    prefix="/api/v1", tags=["feeds"], dependencies=[Depends(require_admin)], route_class=StrictJsonRoute
)


@router.get("/feeds", response_model=list[FeedRead])
def list_feeds(db: DbSession) -> list[FeedRead]:
    """Every feed with its health, last run and next scheduled run."""
    return [service.read(db, feed) for feed in service.list_(db)]


@router.post("/feeds", status_code=201, response_model=FeedRead)
def create_feed(body: FeedCreate, feeds: FeedLauncherDep, db: DbSession, user: AdminUser) -> FeedRead:
    """Add a feed; it is scheduled within the scheduler's next sync."""
    feed = service.create(db, body, actor=user.credential_id, check_options=feeds.check_options)
    return service.read(db, feed)


@router.get("/feeds/{name}", response_model=FeedRead)
def get_feed(name: str, db: DbSession) -> FeedRead:
    return service.read(db, service.get_by_name(db, name))


@router.patch("/feeds/{name}", response_model=FeedRead)
def update_feed(
    name: str, body: FeedUpdate, feeds: FeedLauncherDep, db: DbSession, user: AdminUser
) -> FeedRead:
    """Change settings, or enable / disable (`{"enabled": false}`)."""
    feed = service.update_(db, name, body, actor=user.credential_id, check_options=feeds.check_options)
    return service.read(db, feed)


@router.delete("/feeds/{name}", status_code=204)
def delete_feed(name: str, db: DbSession, user: AdminUser) -> Response:
    """Remove a feed and its run history; the objects it brought in stay."""
    service.delete(db, name, actor=user.credential_id)
    return Response(status_code=204)


@router.get("/feeds/{name}/runs", response_model=list[FeedRunRead])
def list_runs(name: str, db: DbSession, limit: int = Query(20, ge=1, le=500)) -> list[FeedRunRead]:
    """The feed's most recent runs, newest first, with counts and errors."""
    feed = service.get_by_name(db, name)
    return [service.run_read(run) for run in service.runs(db, feed, limit=limit)]


@router.post("/feeds/{name}/run", status_code=202)
def run_now(name: str, feeds: FeedLauncherDep, user: AdminUser) -> dict[str, object]:
    """Start a run now (409 while one is running); follow it at /feeds/{name}/runs."""
    # No request session here: the run opens its own write transactions at once.
    run_id = feeds.start_feed(name, actor=user.credential_id)
    return {"feed": name, "run": run_id, "status": "running"}


@router.get("/scheduler")
def scheduler_state(db: PrimaryDbSession) -> dict[str, object]:
    """The leading scheduler process (None when no process leads) and the jobs with their next runs."""
    return service.scheduler_state(db)
