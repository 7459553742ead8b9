"""/metrics: Prometheus text for feed runs, objects ingested and served, push delivery, errors.

Staff credentials only (a Prometheus scrape config sends one as a bearer token): feed names and
partner slugs are not for everyone to read.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange import metrics
from exchange.auth.deps import DbSession, require_staff
from exchange.feed.models import Feed, FeedRun
from exchange.partner.models import Partner
from exchange.push.models import PushState

router = APIRouter(tags=["operations"])
HEALTH = ("new", "ok", "failing", "unhealthy")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def database_metrics(db: Session) -> list[str]:
    """Gauges read from the database, the same whichever process answers."""
    feeds = list(db.execute(select(Feed.pk, Feed.name, Feed.health, Feed.enabled, Feed.consecutive_failures)))
    names = {row.pk: row.name for row in feeds}
    lines = metrics.gauge(
        "exchange_feed_health",
        "1 for the feed's current health state.",
        [({"feed": r.name, "health": h}, 1 if r.health == h else 0) for r in feeds for h in HEALTH],
    )
    lines += metrics.gauge(
        "exchange_feed_enabled",
        "1 when the feed is scheduled.",
        [({"feed": r.name}, 1 if r.enabled else 0) for r in feeds],
    )
    lines += metrics.gauge(
        "exchange_feed_consecutive_failures",
        "Failed runs in a row.",
        [({"feed": r.name}, r.consecutive_failures) for r in feeds],
    )
    runs = db.execute(
        select(FeedRun.feed_pk, FeedRun.status, func.count()).group_by(FeedRun.feed_pk, FeedRun.status)
    )
    lines += metrics.gauge(
        "exchange_feed_runs_recorded",
        "Feed runs in the run history, by status.",
        [({"feed": names.get(pk, "?"), "status": status}, n) for pk, status, n in runs],
    )
    totals = db.execute(
        select(
            FeedRun.feed_pk,
            func.sum(FeedRun.new),
            func.sum(FeedRun.updated),
            func.sum(FeedRun.dropped),
            func.sum(FeedRun.failed),
        ).group_by(FeedRun.feed_pk)
    )
    samples = []
    for pk, new, updated, dropped, failed in totals:
        for result, value in (("new", new), ("updated", updated), ("dropped", dropped), ("failed", failed)):
            samples.append(({"feed": names.get(pk, "?"), "result": result}, value or 0))
    lines += metrics.gauge(
        "exchange_feed_objects_recorded", "Objects from recorded feed runs, by result.", samples
    )
    last = db.execute(
        select(FeedRun.feed_pk, func.max(FeedRun.finished_at))
        .where(FeedRun.status.in_(("ok", "partial")))
        .group_by(FeedRun.feed_pk)
    )
    lines += metrics.gauge(
        "exchange_feed_last_success_timestamp_seconds",
        "When the feed last ran well.",
        [({"feed": names.get(pk, "?")}, at.timestamp()) for pk, at in last if at is not None],
    )
    pushes = db.execute(
        select(Partner.slug, func.sum(PushState.delivered_total), func.max(PushState.consecutive_failures))
        .join(Partner, Partner.pk == PushState.partner_pk)
        .group_by(Partner.slug)
    )
    rows = list(pushes)
    lines += metrics.gauge(
        "exchange_push_delivered_objects",
        "Object versions pushed to each partner.",
        [({"partner": slug}, total or 0) for slug, total, _ in rows],
    )
    lines += metrics.gauge(
        "exchange_push_consecutive_failures",
        "Failed push runs in a row, per partner.",
        [({"partner": slug}, failures or 0) for slug, _, failures in rows],
    )
    return lines


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(require_staff)])
def metrics_endpoint(db: DbSession) -> PlainTextResponse:
    """Prometheus exposition: this process's counters plus gauges from the database."""
    lines = metrics.render_counters() + database_metrics(db)
    return PlainTextResponse("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
