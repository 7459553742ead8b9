"""Faults under load, as figures: PostgreSQL restarted while partners poll, analysts publish and a
feed ingests; the scheduler's leader killed with SIGKILL.

    .venv/bin/python -m benchmarks.faults                              # both, defaults below
    .venv/bin/python -m benchmarks.faults --partners 10 --seconds 15   # a short run
    .venv/bin/python -m benchmarks.faults --only leader

PostgreSQL restart: the load of `benchmarks.load` (same partners, agreements, analysts, feed and
checks) against a PostgreSQL cluster of this run's own (pg_createcluster on a free port, dropped
at the end; it needs root or the postgres user), restarted with `pg_ctlcluster ... restart -m
fast` a third of the way in. Reported: every answer by status (a 500 or a cut connection is a
failure; 503s must carry Retry-After), how long after the restart the last refusal came (the
exchange recovers by itself: it is never restarted), and the stream checks afterwards (nothing
missed or repeated, ledger equal to what was served). Publishes refused with 503 were not
acknowledged, so they are not expected anywhere.

Leader killed: two `exchange scheduler` processes on one store with a short lease; the leader is
killed with SIGKILL (it cannot give the lease up), and the time until the other holds the lease
is measured, against the bound: the lease plus one renewal interval (a third of the lease).

The pass/fail versions of these and the other faults (SIGKILL during a large POST, a full disk,
a read-only SQLite file) are tests: `tests/faults/`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import load
from benchmarks.instance import postgres_problem
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.feed import service as feed_service
from tests.support.pgcluster import ClusterUnavailable, own_cluster
from tests.support.processes import stop_all

EXE = str(Path(sys.executable).with_name("exchange"))


def pg_restart(opts: argparse.Namespace, workdir: Path) -> list[str]:
    lines: list[str] = []
    with own_cluster("faults") as cluster:
        restart: dict[str, float] = {}

        def during(elapsed: float) -> None:
            if "begun" not in restart and elapsed >= opts.seconds / 3:
                restart["begun"] = time.monotonic()
                cluster.ctl("restart", "-m", "fast")
                restart["done"] = time.monotonic()

        result = load.run_config(
            "postgresql",
            opts.workers,
            opts,
            workdir / "pg-restart",
            cluster.url,
            database_url=cluster.url,
            during=during,
        )
    stats, publish = result.stats, result.publish
    refused = sorted(stats.refused_at + publish.refused_at)
    late = [t for t in refused if t >= restart.get("begun", 0)]
    last = (late[-1] - restart["begun"]) if late else 0.0
    bad = {s: n for s, n in (stats.statuses + publish.statuses).items() if s not in (200, 201, 503)}
    lines.append(
        f"PostgreSQL restart under load ({result.label}, {opts.partners} partners, {opts.seconds:.0f} s)"
    )
    lines.append(
        f"  restart (pg_ctlcluster restart -m fast) took {restart.get('done', 0) - restart.get('begun', 0):.2f} s, "
        f"at {opts.seconds / 3:.0f} s"
    )
    lines.append(f"  poll answers by status: {dict(sorted(stats.statuses.items()))}")
    lines.append(f"  publish answers by status: {dict(sorted(publish.statuses.items()))}")
    lines.append(f"  answers other than 200/201/503 (0 = cut connection): {bad or 'none'}")
    lines.append(f"  503s without Retry-After: {stats.no_retry_after + publish.no_retry_after}")
    lines.append(
        f"  refusals from the restart on: {len(late)}, the last {last:.2f} s after it began "
        f"(it took {restart.get('done', 0) - restart.get('begun', 0):.2f} s); the exchange was not restarted"
    )
    lines.append(
        f"  feed runs {result.feed.get('runs', 0)}, failed {result.feed.get('failed', 0)} (a run in the outage fails and is counted)"
    )
    for line in result.feed.get("log", []):
        lines.append(f"    feed: {line[:200]}")
    check = result.check
    lines.append(
        f"  afterwards: missed {check.missed}, repeated {check.repeated}, unexpected {check.unexpected}, "
        f"ledger mismatches {check.ledger_mismatch}, leaks {check.leaks}, indicators missed/extra "
        f"{check.indicators_missed}/{check.indicators_extra}"
    )
    for line in check.partners_wrong[:5]:
        lines.append(f"    WRONG {line}")
    ok = not bad and not (stats.no_retry_after + publish.no_retry_after) and check.ok and "done" in restart
    lines.append(f"  verdict: {'OK' if ok else 'WRONG'}")
    return lines


def _leader_pid(factory) -> int | None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        leader = feed_service.scheduler_state(db)["leader"]
    return int(leader.split(":")[1]) if leader else None


def leader_kill(backend: str, opts: argparse.Namespace, workdir: Path) -> list[str]:
    lease = opts.lease
    from contextlib import ExitStack

    with ExitStack() as stack:
        url = None
        if backend == "postgresql":
            from benchmarks.instance import create_postgres_database

            url = create_postgres_database(opts.pg_url, stack)
        settings = Settings(
            data_dir=workdir / f"lease-{backend}", database_url=url, secret_key=secrets.token_urlsafe(40)
        )
        settings.ensure_data_dir()
        engine = make_engine(settings.sqlalchemy_url)
        stack.callback(engine.dispose)
        migrate(engine)
        factory = make_session_factory(engine)
        with session_scope(factory, write=True) as db:
            initialise(db, settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env.update(
            EXCHANGE_DATA_DIR=str(settings.data_dir),
            EXCHANGE_SECRET_KEY=settings.secret_key or "",
            EXCHANGE_SCHEDULER_LEASE_SECONDS=str(lease),
            EXCHANGE_SCHEDULER_SYNC_SECONDS="0.5",
            EXCHANGE_LOG_LEVEL="WARNING",
        )
        if url:
            env["EXCHANGE_DATABASE_URL"] = url
        takeovers: list[float] = []
        procs = [
            subprocess.Popen(
                [EXE, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(opts.trials + 1)
        ]

        def end_all() -> None:
            stop_all(procs)

        stack.callback(end_all)
        deadline = time.monotonic() + 120
        while _leader_pid(factory) not in {p.pid for p in procs}:
            if time.monotonic() > deadline:
                return [f"leader kill ({backend}): no scheduler took the lease in 120 s"]
            time.sleep(0.1)
        for _ in range(opts.trials):
            pid = _leader_pid(factory)
            victim = next(p for p in procs if p.pid == pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            killed = time.monotonic()
            alive = {p.pid for p in procs if p.poll() is None}
            while (now := _leader_pid(factory)) not in alive:
                if time.monotonic() - killed > lease * 5 + 10:
                    break
                time.sleep(0.05)
            takeovers.append(time.monotonic() - killed if now in alive else float("inf"))
        bound = lease + lease / 3
        label = "SQLite" if backend == "sqlite" else "PostgreSQL"
        verdict = "OK" if max(takeovers) <= bound + 0.5 else "SLOW"
        times = ", ".join(f"{t:.2f}" for t in takeovers)
        line = (
            f"Scheduler leader killed with SIGKILL ({label}, lease {lease:g} s, {opts.trials} kills): "
            f"taken over after {times} s; bound {bound:.2f} s (lease + one renewal interval): {verdict}"
        )
        return [line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("restart", "leader"), help="run one of the two")
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--analysts", type=int, default=2)
    parser.add_argument("--publish-every", type=float, default=0.5)
    parser.add_argument("--feed-step", type=int, default=20)
    parser.add_argument("--feed-pause", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--trials", type=int, default=2, help="leader kills per database")
    parser.add_argument("--pg-url", default=load.DEFAULT_PG, help="for the leader test's throw-away database")
    opts = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="exchange-faults-"))
    lines = [f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    try:
        if opts.only in (None, "restart"):
            try:
                lines += pg_restart(opts, workdir)
            except ClusterUnavailable as exc:
                lines.append(f"PostgreSQL restart: skipped ({exc})")
        if opts.only in (None, "leader"):
            backends = ["sqlite"] + ([] if postgres_problem(opts.pg_url) else ["postgresql"])
            for backend in backends:
                lines += leader_kill(backend, opts, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    return 1 if any("WRONG" in line or "SLOW" in line or "no scheduler" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
