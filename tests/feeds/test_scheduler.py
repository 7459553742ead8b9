"""The scheduler: one leader through a database lease, takeover, jobs that survive restarts,
retries with backoff, unhealthy feeds, and two `exchange scheduler` processes never overlapping."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from exchange.database.core import session_scope
from exchange.feed import service as feed_service
from exchange.feed.models import Feed, FeedRun
from exchange.signing import KeyRing, default_directory
from feeds import jobs, lease
from feeds.scheduler import SchedulerService
from tests.support.processes import stop_all

EXE = str(Path(sys.executable).with_name("exchange"))


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def fast(feed_settings):  # type: ignore[no-untyped-def]
    return feed_settings.model_copy(
        update={
            "scheduler_lease_seconds": 1.5,
            "scheduler_sync_seconds": 0.5,
            "feed_retries": 2,
            "feed_unhealthy_after": 3,
        }
    )


@pytest.fixture
def schedulers(factory, fast) -> Iterator[Callable[..., SchedulerService]]:  # type: ignore[no-untyped-def]
    made: list[SchedulerService] = []
    keyring = KeyRing(default_directory(fast))

    def make(holder: str, settings=None) -> SchedulerService:  # type: ignore[no-untyped-def]
        service = SchedulerService(settings or fast, factory, keyring, holder=holder)
        made.append(service)
        service.start()
        return service

    yield make
    for service in made:
        service.stop()


def _job_time(factory, job_id: str):  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        return feed_service.next_run_at(db, job_id)


def test_one_leader_and_takeover_when_it_stops(schedulers, factory, fast) -> None:
    # A lease long enough that a loaded machine's slow renewal does not hand it over by itself:
    # this test is about the second process waiting, and taking over at once on a clean stop.
    steady = fast.model_copy(update={"scheduler_lease_seconds": 6.0})
    first = schedulers("holder-a", steady)
    wait_for(lambda: first.is_leader, what="a leader")
    second = schedulers("holder-b", steady)
    time.sleep(1.0)
    assert first.is_leader and not second.is_leader
    with session_scope(factory) as db:
        assert feed_service.scheduler_state(db)["leader"] == "holder-a"
    first.stop()
    wait_for(lambda: second.is_leader, timeout=5, what="the second to take over")
    assert not first.is_leader


def test_a_leader_that_stops_renewing_is_replaced_after_its_lease(schedulers, factory, fast) -> None:
    first = schedulers("stuck-a")
    wait_for(lambda: first.is_leader, what="a leader")
    first._stop.set()  # the renewal loop ends, as if the process hung or died; the lease is not released
    first._thread.join(timeout=5)  # type: ignore[union-attr]
    started = time.monotonic()
    second = schedulers("holder-c")
    wait_for(lambda: second.is_leader, timeout=10, what="takeover after the lease expired")
    assert time.monotonic() - started >= fast.scheduler_lease_seconds * 0.5
    first._step_down("test")


def test_a_failed_renewal_keeps_leading_until_the_lease_runs_out(schedulers, fast, monkeypatch) -> None:
    first = schedulers("flaky-a")
    wait_for(lambda: first.is_leader, what="a leader")
    real = lease.hold_lease
    failing = {"on": True}
    leading_at_failure: list[bool] = []  # whether it led as each failing renewal began

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failing["on"]:
            leading_at_failure.append(first.is_leader)
            raise OperationalError("UPDATE scheduler_lease", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lease, "hold_lease", flaky)
    started = time.monotonic()
    # Read when the second failing renewal begins, so the first one's decision is in, however
    # the renewal loop's timing falls against this test's clock.
    wait_for(lambda: len(leading_at_failure) >= 2, timeout=5, what="two failed renewals")
    assert leading_at_failure[:2] == [True, True]  # the lease it renewed last was still its own
    wait_for(lambda: not first.is_leader, timeout=5, what="the leader to step down")
    # ... and it stops before the lease can pass to another process
    assert time.monotonic() - started < fast.scheduler_lease_seconds + 0.5
    failing["on"] = False
    wait_for(lambda: first.is_leader, timeout=5, what="leading again once renewals succeed")


def test_jobs_survive_a_restart_and_follow_feed_changes(schedulers, feeds, factory) -> None:
    name, _ = feeds.add("text", "http://127.0.0.1:9/never.txt", every="1h")
    first = schedulers("restart-a")
    wait_for(lambda: _job_time(factory, f"feed:{name}"), what="the feed's job")
    planned = _job_time(factory, f"feed:{name}")
    assert _job_time(factory, "housekeeping:statuses") is not None
    first.stop()
    second = schedulers("restart-b")
    wait_for(lambda: second.is_leader, what="a new leader")
    second.sync_now()
    assert _job_time(factory, f"feed:{name}") == planned  # kept, not reset by the restart

    with session_scope(factory, write=True) as db:
        feed_service.set_enabled(db, name, False, actor="test")
    wait_for(lambda: _job_time(factory, f"feed:{name}") is None, what="the disabled feed's job to go")
    with session_scope(factory, write=True) as db:
        feed_service.set_enabled(db, name, True, actor="test")
        db.execute(update(Feed).where(Feed.name == name).values(every_seconds=7200))
    wait_for(lambda: _job_time(factory, f"feed:{name}"), what="the job to come back")


def _runs(factory, name: str) -> list[FeedRun]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        feed = feed_service.get_by_name(db, name)
        return list(reversed(feed_service.runs(db, feed, limit=50)))


def test_failed_runs_are_retried_with_backoff_then_recover(
    schedulers, feeds, feed_server, factory, fast
) -> None:
    url = feed_server.serve("/flaky.txt", b"198.51.100.77\n", fail_first=2)
    name, _ = feeds.add("text", url, every="1h")
    schedulers("retry-a")
    wait_for(
        lambda: len(_runs(factory, name)) >= 3 and _runs(factory, name)[2].status != "running",
        timeout=30,
        what="three runs",
    )
    runs = _runs(factory, name)
    assert [(r.trigger, r.attempt, r.status) for r in runs[:3]] == [
        ("schedule", 1, "failed"),
        ("retry", 2, "failed"),
        ("retry", 3, "ok"),
    ]
    assert "HTTP 500" in (runs[0].error or "")
    first_gap = (runs[1].started_at - runs[0].finished_at).total_seconds()
    second_gap = (runs[2].started_at - runs[1].finished_at).total_seconds()
    assert first_gap >= fast.feed_retry_base_seconds * 0.9
    assert second_gap >= fast.feed_retry_base_seconds * 2 * 0.9
    assert feeds.get(name).health == "ok"


def test_a_feed_that_keeps_failing_becomes_unhealthy(schedulers, feeds, feed_server, factory) -> None:
    url = feed_server.serve("/down.txt", b"", status=503)
    name, _ = feeds.add("text", url, every="1h")
    schedulers("unhealthy-a")
    wait_for(
        lambda: len([r for r in _runs(factory, name) if r.status == "failed"]) >= 3,
        timeout=30,
        what="three failed runs",
    )
    time.sleep(0.5)
    assert feeds.get(name).health == "unhealthy"
    assert len(_runs(factory, name)) == 3  # one scheduled run and feed_retries (2) retries, then it waits


def test_retry_delays_double(fast) -> None:
    assert [jobs.retry_delay(fast, n).total_seconds() for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.8])


def test_two_scheduler_processes_never_run_a_feed_at_once(
    settings, engine, feeds, feed_server, factory, tmp_path
) -> None:
    url = feed_server.serve("/often.txt", b"198.51.100.88\n198.51.100.89\n", hang=0.3, etag=False)
    name, _ = feeds.add("text", url, every="1m")
    with session_scope(
        factory, write=True
    ) as db:  # the CLI refuses intervals under 1m; the test wants runs now
        db.execute(update(Feed).where(Feed.name == name).values(every_seconds=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update(
        {
            "EXCHANGE_DATA_DIR": str(settings.data_dir),
            "EXCHANGE_SECRET_KEY": settings.secret_key or "",
            "EXCHANGE_SCHEDULER_LEASE_SECONDS": "2",
            "EXCHANGE_SCHEDULER_SYNC_SECONDS": "0.5",
            "EXCHANGE_LOG_LEVEL": "WARNING",
        }
    )
    if settings.database_url:
        env["EXCHANGE_DATABASE_URL"] = settings.database_url
    procs = [
        subprocess.Popen([EXE, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        wait_for(
            lambda: len([r for r in _runs(factory, name) if r.status != "running"]) >= 3,
            timeout=40,
            what="three runs",
        )
        with session_scope(factory) as db:
            leader = feed_service.scheduler_state(db)["leader"]
        pid = int(leader.split(":")[1])
        victim = next(p for p in procs if p.pid == pid)
        before = len(_runs(factory, name))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        wait_for(lambda: len(_runs(factory, name)) >= before + 3, timeout=40, what="runs by the new leader")
    finally:
        stop_all(procs)
    with session_scope(factory, write=True) as db:
        feed_service.set_enabled(db, name, False, actor="test")
    runs = [r for r in _runs(factory, name) if r.finished_at is not None and r.status != "abandoned"]
    spans = sorted((r.started_at, r.finished_at) for r in runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two runs of the same feed overlapped"


def _finished_runs(factory, name: str) -> list[FeedRun]:  # type: ignore[no-untyped-def]
    return [r for r in _runs(factory, name) if r.status != "running"]


def test_a_feed_whose_next_run_cannot_be_computed_does_not_stop_the_scheduler(
    schedulers, feeds, feed_server, factory, monkeypatch
) -> None:
    # An older release stored an interval of 3,000,000 days and its job: the job ran once, and
    # computing its next run (year 10240) killed APScheduler's thread, at every start again.
    from apscheduler.job import Job
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from feeds import scheduler as scheduler_module

    if factory.kw["bind"].dialect.name != "sqlite":
        pytest.skip("PostgreSQL's integer feed.every_seconds cannot hold such an interval")
    monkeypatch.setattr(scheduler_module, "FIRST_RUN_DELAY", timedelta(seconds=0.2))
    url = feed_server.serve("/long.txt", b"198.51.100.90\n")
    long_seconds = 3_000_000 * 86400
    bad, _ = feeds.add("text", url, every="1h")
    with session_scope(factory, write=True) as db:
        db.execute(update(Feed).where(Feed.name == bad).values(every_seconds=long_seconds))
    store = SQLAlchemyJobStore(engine=factory.kw["bind"], tablename="apscheduler_jobs")
    store.start(BackgroundScheduler(timezone=UTC), "default")  # never started: no thread runs it
    store.add_job(
        Job(
            store._scheduler,
            id=f"feed:{bad}",
            func=jobs.FEED_JOB,
            trigger=IntervalTrigger(seconds=long_seconds, start_date=datetime.now(UTC), timezone=UTC),
            executor="default",
            args=[bad],
            kwargs={},
            name=f"every {long_seconds}s",
            misfire_grace_time=60,
            coalesce=True,
            max_instances=1,
            next_run_time=datetime.now(UTC),
        )
    )

    try:
        service = schedulers("long-a")
        wait_for(lambda: service.is_leader, what="a leader")
        time.sleep(1.5)  # time for the stored job to come due and its next run to be computed
        good, _ = feeds.add("text", url, every="1h")
        wait_for(lambda: _finished_runs(factory, good), timeout=15, what="a later feed to run")
        assert service.is_leader
        assert _job_time(factory, f"feed:{bad}") is None  # not scheduled, rather than failing each time
    finally:  # the database is shared with later tests
        with session_scope(factory, write=True) as db:
            feed_service.set_enabled(db, bad, False, actor="test")


def test_a_job_store_error_while_planning_the_next_run_does_not_stop_the_scheduler(
    schedulers, feeds, feed_server, factory, monkeypatch
) -> None:
    from feeds import scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "FIRST_RUN_DELAY", timedelta(seconds=0.2))
    real = SQLAlchemyJobStore.update_job
    failed: list[str] = []

    def flaky(self, job):  # type: ignore[no-untyped-def]
        if not failed and job.id.startswith("feed:"):
            failed.append(job.id)
            raise OperationalError("UPDATE apscheduler_jobs", {}, Exception("database is locked"))
        return real(self, job)

    monkeypatch.setattr(SQLAlchemyJobStore, "update_job", flaky)
    url = feed_server.serve("/hiccup.txt", b"198.51.100.91\n")
    feeds.add("text", url, every="1h")  # its job is the one whose update fails
    schedulers("hiccup-a")
    wait_for(lambda: failed, timeout=15, what="the failing update")
    second, _ = feeds.add("text", url, every="1h")
    wait_for(lambda: _finished_runs(factory, second), timeout=15, what="a later feed to run")
