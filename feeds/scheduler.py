"""The scheduler: APScheduler 3.x with its jobs in the exchange's database, led by exactly one
process at a time through a lease row that the leader renews; another process takes over when
the leader stops (at once) or dies (when its lease runs out)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session, sessionmaker

from exchange.audit import anchor as audit_anchor
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.feed import service as feed_service
from exchange.signing import KeyRing, default_directory
from feeds import jobs, lease

log = logging.getLogger(__name__)
LEASE = "scheduler"
HOUSEKEEPING = {"agreements": 600, "statuses": 3600, "keys": 86400}  # seconds between runs
FIRST_RUN_DELAY = timedelta(seconds=5)  # a new or rescheduled job runs soon, not one interval later


JOB_ROUND_RETRY_SECONDS = 10.0  # after a round of due jobs failed (say the job store's database)


class _Scheduler(BackgroundScheduler):  # type: ignore[misc]  # apscheduler ships no types
    """APScheduler whose job thread outlives a failed round: in 3.x an exception there (a job
    store write, a trigger that cannot compute its next run) ends the thread for good, while
    the lease thread keeps renewing, so this process would lead and run nothing."""

    def _process_jobs(self) -> float | None:
        try:
            wait: float | None = super()._process_jobs()
        except Exception:
            log.exception(
                "scheduler: a round of due jobs failed; next round in %g s", JOB_ROUND_RETRY_SECONDS
            )
            return JOB_ROUND_RETRY_SECONDS
        return wait


def _unplannable(trigger: Any, soon: datetime) -> str | None:
    """Why a trigger cannot plan its first two runs (an interval that ends past year 9999), or None."""
    try:
        first = trigger.get_next_fire_time(None, soon)
        if first is not None:
            trigger.get_next_fire_time(first, first)
    except (ValueError, OverflowError) as exc:
        return str(exc)
    return None


class SchedulerService:
    """Offers to lead; while leading, runs APScheduler and keeps its jobs in line with the database."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        keyring: KeyRing,
        *,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.keyring = keyring
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.ttl = timedelta(seconds=settings.scheduler_lease_seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._next_sync = 0.0
        self._held_until = 0.0  # monotonic time until which the last renewal keeps the lease ours
        self._refused: dict[str, str] = {}  # job id -> the signature logged as unplannable

    @property
    def is_leader(self) -> bool:
        return self._scheduler is not None

    def start(self) -> None:
        """Start offering to lead, on a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="scheduler-lease")
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and give the lease up so another process can lead at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.scheduler_lease_seconds + 10)
        self._step_down("stopping")
        try:
            with session_scope(self.factory, write=True) as db:
                lease.drop_lease(db, LEASE, holder=self.holder)
        except Exception:
            log.warning("scheduler %s: could not release the lease; it expires by itself", self.holder)

    def sync_now(self) -> None:
        """Bring the jobs in line with feeds and agreements now (the leader also does it periodically)."""
        if self._scheduler is not None:
            self._sync(self._scheduler)

    def _loop(self) -> None:
        interval = max(0.2, self.settings.scheduler_lease_seconds / 3)
        while not self._stop.is_set():
            attempted = time.monotonic()
            try:
                with session_scope(self.factory, write=True) as db:
                    ours = lease.hold_lease(db, LEASE, holder=self.holder, ttl=self.ttl)
                if ours:
                    self._held_until = attempted + self.ttl.total_seconds()
            except Exception as exc:
                # A failed renewal (a busy or restarting database) leaves the lease ours until
                # the last renewal runs out; one renewal interval before that, stop scheduling,
                # since another process may then take it.
                ours = self._scheduler is not None and time.monotonic() + interval < self._held_until
                log.warning(
                    "scheduler %s: lease renewal failed (%s)%s",
                    self.holder,
                    type(exc).__name__,
                    "; still held from the last renewal" if ours else "",
                )
            if ours and self._scheduler is None:
                try:
                    self._lead()
                except Exception:
                    log.exception("scheduler %s: could not start leading", self.holder)
                    self._step_down("start failed")
            elif not ours and self._scheduler is not None:
                self._step_down("another process holds the lease")
            if self._scheduler is not None and time.monotonic() >= self._next_sync:
                try:
                    self._sync(self._scheduler)
                except Exception:
                    log.exception("scheduler %s: job sync failed", self.holder)
                self._next_sync = time.monotonic() + self.settings.scheduler_sync_seconds
            self._stop.wait(interval)

    def _lead(self) -> None:
        log.info("scheduler %s: leading", self.holder)
        with session_scope(self.factory, write=True) as db:
            stale = feed_service.abandon_stale_runs(
                db, older_than=timedelta(seconds=self.settings.feed_max_run_seconds)
            )
        if stale:
            log.warning(
                "scheduler %s: %d runs left by stopped processes marked abandoned", self.holder, stale
            )
        engine = self.factory.kw["bind"]
        scheduler = _Scheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.settings.scheduler_misfire_grace_seconds,
            },
            timezone=UTC,
        )
        jobs.set_context(jobs.JobContext(self.factory, self.settings, self.keyring, self.holder, scheduler))
        # Paused until the stored jobs match the database, so a disabled feed does not run once more.
        self._scheduler = scheduler
        scheduler.start(paused=True)
        try:
            self._sync(scheduler)
        finally:
            scheduler.resume()
        self._next_sync = time.monotonic() + self.settings.scheduler_sync_seconds

    def _step_down(self, why: str) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        log.info("scheduler %s: no longer leading (%s)", self.holder, why)
        try:
            scheduler.shutdown(wait=False)  # runs in progress finish; their feed claims keep others out
        except Exception:
            log.debug("scheduler shutdown", exc_info=True)
        jobs.set_context(None)

    def _sync(self, scheduler: BackgroundScheduler) -> None:
        wanted = self._wanted()
        existing = {job.id: job for job in scheduler.get_jobs()}
        for job_id in existing:
            base = job_id.removesuffix(":retry")
            if base not in wanted:
                scheduler.remove_job(job_id)
                log.info("scheduler: job %s removed", job_id)
        soon = datetime.now(UTC) + FIRST_RUN_DELAY
        for job_id, (func, args, signature, trigger) in wanted.items():
            job = existing.get(job_id)
            planned = trigger(soon)
            # Checked on every sync, not only when the schedule changes: a job an older release
            # stored with such an interval (same signature) is taken out before it comes due.
            problem = _unplannable(planned, soon)
            if problem is not None:
                if job is not None:
                    scheduler.remove_job(job_id)
                if self._refused.get(job_id) != signature:
                    log.error(
                        "scheduler: job %s (%s) not scheduled: its next run cannot be computed (%s); "
                        "give it an interval of at most 365d",
                        job_id,
                        signature,
                        problem,
                    )
                    self._refused[job_id] = signature
                continue
            self._refused.pop(job_id, None)
            try:
                if job is None:
                    scheduler.add_job(
                        func, planned, args=args, id=job_id, name=signature, replace_existing=True
                    )
                    log.info("scheduler: job %s added (%s)", job_id, signature)
                elif job.name != signature:
                    scheduler.modify_job(job_id, name=signature)
                    scheduler.reschedule_job(job_id, trigger=planned)
                    log.info("scheduler: job %s now %s", job_id, signature)
            except Exception:  # one job that cannot be stored leaves the others scheduled
                log.exception("scheduler: job %s (%s) could not be scheduled", job_id, signature)

    def _wanted(self) -> dict[str, tuple[str, list[Any], str, Any]]:
        from feeds.delivery import push_targets

        wanted: dict[str, tuple[str, list[Any], str, Any]] = {}
        with session_scope(self.factory) as db:
            for feed in feed_service.list_(db):
                if not feed.enabled:
                    continue
                if feed.cron:
                    wanted[f"feed:{feed.name}"] = (
                        jobs.FEED_JOB,
                        [feed.name],
                        f"cron {feed.cron}",
                        lambda _soon, c=feed.cron: CronTrigger.from_crontab(c, timezone=UTC),
                    )
                else:
                    wanted[f"feed:{feed.name}"] = (
                        jobs.FEED_JOB,
                        [feed.name],
                        f"every {feed.every_seconds}s",
                        _interval(feed.every_seconds or 3600),
                    )
            for target in push_targets(db):
                wanted[f"push:{target.slug}"] = (
                    jobs.PUSH_JOB,
                    [target.slug],
                    f"every {target.every_seconds}s",
                    _interval(target.every_seconds),
                )
        for kind, seconds in HOUSEKEEPING.items():
            wanted[f"housekeeping:{kind}"] = (
                jobs.HOUSEKEEPING_JOB,
                [kind],
                f"every {seconds}s",
                _interval(seconds),
            )
        return wanted


def _interval(seconds: int) -> Any:
    return lambda soon: IntervalTrigger(seconds=seconds, start_date=soon, timezone=UTC)


def run_forever(settings: Settings) -> int:
    """`exchange scheduler`: offer to lead until SIGTERM or SIGINT, then hand over cleanly."""
    engine = make_engine(settings.sqlalchemy_url)
    keyring = KeyRing(default_directory(settings))
    keyring.ensure()
    audit_anchor.attach(engine, keyring)
    service = SchedulerService(settings, make_session_factory(engine), keyring)
    done = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("scheduler: signal %d, stopping", signum)
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(
        f"scheduler {service.holder}: offering to lead (lease {settings.scheduler_lease_seconds:g} s)",
        flush=True,
    )
    service.start()
    try:
        while not done.wait(1.0):
            pass
    finally:
        service.stop()
        engine.dispose()
    return 0
