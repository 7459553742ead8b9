"""What the scheduler runs. APScheduler stores jobs by textual reference ("feeds.jobs:feed_job")
with plain arguments, so the job store stays picklable; the process's context is set here by the
scheduler that leads."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from exchange.config import Settings
from exchange.database.core import session_scope
from exchange.errors import NotFoundError
from exchange.feed.models import Feed
from exchange.feed.service import FeedBusyError
from exchange.signing import KeyRing
from feeds import housekeeping
from feeds.runner import run_feed

log = logging.getLogger(__name__)
FEED_JOB = "feeds.jobs:feed_job"
PUSH_JOB = "feeds.jobs:push_job"
HOUSEKEEPING_JOB = "feeds.jobs:housekeeping_job"


@dataclass
class JobContext:
    factory: sessionmaker[Session]
    settings: Settings
    keyring: KeyRing
    holder: str
    scheduler: Any  # the APScheduler BackgroundScheduler that runs the jobs


_context: JobContext | None = None


def set_context(context: JobContext | None) -> None:
    global _context
    _context = context


def _ctx() -> JobContext:
    if _context is None:
        raise RuntimeError("no scheduler context in this process")
    return _context


def retry_delay(settings: Settings, attempt: int) -> timedelta:
    """Backoff before retry number `attempt` (1, 2, ...): base, 2 x base, 4 x base, ..."""
    return timedelta(seconds=settings.feed_retry_base_seconds * 2 ** (attempt - 1))


def feed_job(name: str, attempt: int = 1) -> None:
    """Run feed `name`; after a failure schedule a retry with backoff, up to feed_retries times."""
    ctx = _ctx()
    with session_scope(ctx.factory) as db:
        feed = db.scalars(select(Feed).where(Feed.name == name)).first()
        enabled = feed is not None and feed.enabled
    if not enabled:
        log.info("feed %s is disabled or removed; not running it", name)
        return
    try:
        summary = run_feed(
            ctx.factory,
            ctx.settings,
            name,
            trigger="schedule" if attempt == 1 else "retry",
            attempt=attempt,
            holder=ctx.holder,
        )
    except FeedBusyError as exc:
        log.info("feed %s: skipped, %s", name, exc.message)
        return
    except NotFoundError:
        log.info("feed %s no longer exists; dropping its job", name)
        for job_id in (f"feed:{name}", f"feed:{name}:retry"):
            with contextlib.suppress(Exception):  # already gone
                ctx.scheduler.remove_job(job_id)
        return
    except Exception:
        log.exception("feed %s: the run could not start", name)
        return
    if summary.status == "failed" and attempt <= ctx.settings.feed_retries:
        delay = retry_delay(ctx.settings, attempt)
        ctx.scheduler.add_job(
            FEED_JOB,
            "date",
            run_date=datetime.now(UTC) + delay,
            args=[name, attempt + 1],
            id=f"feed:{name}:retry",
            name=f"retry {attempt}",
            replace_existing=True,
        )
        log.info(
            "feed %s: retry %d of %d in %.0f s",
            name,
            attempt,
            ctx.settings.feed_retries,
            delay.total_seconds(),
        )


def push_job(slug: str) -> None:
    """Push to partner `slug` what its agreement allows and it has not received."""
    from feeds.delivery import push_partner

    ctx = _ctx()
    try:
        push_partner(ctx.factory, ctx.settings, ctx.keyring, slug, holder=ctx.holder)
    except Exception:  # logged and counted by push_partner; the next run resumes
        log.debug("push to %s failed", slug, exc_info=True)


def housekeeping_job(kind: str) -> None:
    """One housekeeping task: "agreements", "statuses" or "keys"."""
    ctx = _ctx()
    try:
        with session_scope(ctx.factory, write=True) as db:
            if kind == "agreements":
                housekeeping.announce_ended_agreements(db, today=datetime.now(UTC).date())
            elif kind == "statuses":
                housekeeping.purge_statuses(db, older_than=timedelta(days=ctx.settings.status_ttl_days))
            elif kind == "keys":
                housekeeping.flag_key_rotation(
                    db, ctx.keyring, max_age_days=ctx.settings.signing_key_rotate_days
                )
            else:
                log.error("unknown housekeeping task %r", kind)
    except Exception:
        log.exception("housekeeping %s failed", kind)
