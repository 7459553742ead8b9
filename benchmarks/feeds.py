"""Section 7: feed ingest end to end (fetch, normalise, validate, store), on one core.

    .venv/bin/python -m benchmarks.feeds                 # 100,000-line text feed, 100,000-object TAXII feed
    .venv/bin/python -m benchmarks.feeds --quick         # 10,000 of each
    .venv/bin/python -m benchmarks.feeds --backends sqlite

The feed runs in this process, single-threaded, exactly as `exchange feed run` runs it; the
servers it pulls from run in their own processes: a plain HTTP server for the text list, and
another exchange for the TAXII feed (medallion's memory backend pages in O(n) per page, so it
cannot serve 100,000 objects in reasonable time). Side by side, the same smaller TAXII feed is
pulled once from medallion 3.0.0 and once from an exchange, so the table shows what the source
costs. CPU seconds of this process are reported next to wall seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import data
from benchmarks.instance import Instance, create_postgres_database, postgres_problem, postgres_version
from benchmarks.report import Report, machine_facts
from benchmarks.servers import ServerProcess
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.feed import service as feed_service
from exchange.feed.schemas import FeedAuth, FeedCreate
from exchange.intel import service as intel_service
from feeds.runner import RunSummary, run_feed
from feeds.sources import check_options

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET = 2_000  # indicators/s on one core
_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Target:
    """The exchange that runs the feeds (in this process)."""

    settings: Settings
    factory: object

    def feed(self, kind: str, url: str, *, options: dict | None = None, auth: FeedAuth | None = None) -> str:
        name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
        with session_scope(self.factory, write=True) as db:  # type: ignore[arg-type]
            root = intel_service.get_api_root(db, self.settings.api_root)
            coll = intel_service.create_collection(
                db, api_root=root, alias=f"t-{uuid.uuid4().hex[:10]}", title="feed benchmark target"
            )
            feed_service.create(
                db,
                FeedCreate(
                    name=name,
                    kind=kind,
                    url=url,
                    collection=coll.alias,
                    tlp="green",
                    options=options or {},
                    auth=auth,
                    timeout=120,
                ),
                actor="bench",
                check_options=check_options,
            )
        return name


def make_target(backend: str, workdir: Path, stack: ExitStack, pg_admin: str) -> Target:
    database_url = create_postgres_database(pg_admin, stack) if backend == "postgresql" else None
    settings = Settings(
        data_dir=workdir / "target",
        database_url=database_url,
        secret_key=secrets.token_urlsafe(40),
        feed_max_run_seconds=3600,
    )
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    stack.callback(engine.dispose)
    migrate(engine)
    factory = make_session_factory(engine)
    with session_scope(factory, write=True) as db:
        initialise(db, settings)
    return Target(settings, factory)


def text_list(path: Path, count: int, seed: int) -> None:
    """`count` distinct IoC lines (IPv4, domains, URLs, SHA-256) with some comments between."""
    rng = random.Random(seed)
    with path.open("w") as out:
        out.write("# benchmark IoC list\n")
        for i in range(count):
            kind = i % 4
            if kind == 0:
                out.write(f"{45 + (i >> 24) % 50}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
            elif kind == 1:
                out.write(f"host{i}-{rng.getrandbits(24):06x}.example-bad.net\n")
            elif kind == 2:
                out.write(f"https://dl{i}.example-bad.org/p/{rng.getrandbits(40):010x}.php\n")
            else:
                out.write(f"{rng.getrandbits(256):064x}\n")
            if i % 1000 == 999:
                out.write(f"# block {i // 1000}\n")


def timed(target: Target, name: str) -> tuple[RunSummary, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run_feed(target.factory, target.settings, name)  # type: ignore[arg-type]
    return summary, time.perf_counter() - wall, time.process_time() - cpu


def record(
    report: Report, label: str, what: str, summary: RunSummary, wall: float, cpu: float, expected: int
) -> None:
    stored = summary.counts["new"]
    if summary.status != "ok" or stored != expected:
        report.error("7", what, label, f"{summary.line()} (expected {expected:,} new)")
        return
    rate = stored / wall
    report.add(
        "7",
        what,
        label,
        f"{stored:,} in {wall:.1f} s = {rate:,.0f}/s (CPU {cpu:.1f} s = {stored / cpu:,.0f}/s)",
        f">= {TARGET:,}/s",
        "met" if rate >= TARGET else "MISSED",
    )


def bench_backend(backend: str, count: int, small: int, report: Report, workdir: Path, pg_admin: str) -> None:
    label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
    with ExitStack() as stack:
        target = make_target(backend, workdir / backend, stack, pg_admin)
        # Text list over plain HTTP from another process.
        lists = workdir / backend / "lists"
        lists.mkdir(parents=True)
        text_list(lists / "iocs.txt", count, seed=7)
        http = subprocess.Popen(
            [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(lists)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        stack.callback(http.kill)
        port = _http_server_port(http)
        name = target.feed("text", f"http://127.0.0.1:{port}/iocs.txt")
        log(f"{label}: text feed of {count:,} lines")
        summary, wall, cpu = timed(target, name)
        record(report, label, f"text feed, {count:,} lines", summary, wall, cpu, count)
        again, wall2, _ = timed(target, name)
        report.add(
            "7",
            "text feed, unchanged re-run",
            label,
            f"{again.counts['fetched']:,} fetched in {wall2 * 1000:.0f} ms (conditional GET)",
        )

        # TAXII feed from another exchange holding `count` indicators.
        source = Instance("sqlite", workdir / backend / "source", stack, pg_admin_url=pg_admin)
        coll = source.collection("feed-source")
        loader = data.BulkLoader(source.engine, tlp_rank=1, added_by="bench")
        objects = data.IndicatorFactory(seed=11).batch(count)
        loader.load(coll.pk, iter(objects), count)
        auth = FeedAuth(username=source.auth[0], password=source.auth[1])
        name = target.feed("taxii21", source.collection_url(coll), options={"page_size": 1000}, auth=auth)
        log(f"{label}: TAXII feed of {count:,} objects from an exchange")
        summary, wall, cpu = timed(target, name)
        record(report, label, f"TAXII feed, {count:,} objects", summary, wall, cpu, count)

        # Side by side: the same `small` objects from medallion and from an exchange.
        few = objects[:small]
        coll_small = source.collection("feed-source-small")
        loader.load(coll_small.pk, iter(few), small)
        name = target.feed(
            "taxii21", source.collection_url(coll_small), options={"page_size": 100}, auth=auth
        )
        ours, ours_wall, _ = timed(target, name)
        medallion = start_medallion(few, workdir / backend / "medallion", stack)
        name = target.feed(
            "taxii21",
            medallion,
            options={"page_size": 100},
            auth=FeedAuth(username="bench", password="bench"),
        )
        theirs, theirs_wall, _ = timed(target, name)
        if ours.counts["new"] != small or theirs.counts["new"] != small:
            report.error(
                "7",
                f"TAXII feed, {small:,} objects, pages of 100",
                label,
                f"exchange source: {ours.line()}; medallion source: {theirs.line()}",
            )
        else:
            report.add(
                "7",
                f"TAXII feed, {small:,} objects, pages of 100",
                f"{label} vs medallion",
                f"from an exchange {ours_wall:.2f} s, from medallion {theirs_wall:.2f} s "
                f"({theirs_wall / ours_wall:.1f}x)",
            )


def _http_server_port(process: subprocess.Popen) -> int:  # type: ignore[type-arg]
    line = process.stdout.readline() if process.stdout else ""
    # "Serving HTTP on 127.0.0.1 port 43127 (http://127.0.0.1:43127/) ..."
    try:
        return int(line.split(" port ")[1].split()[0])
    except (IndexError, ValueError):
        raise RuntimeError(f"http.server did not start: {line!r}") from None


def start_medallion(objects: list[dict], workdir: Path, stack: ExitStack) -> str:
    """medallion 3.0.0 (memory backend) serving `objects`; returns the collection URL."""
    workdir.mkdir(parents=True)
    collection_id = str(uuid.uuid4())
    config = workdir / "medallion.json"
    # The discovery URLs inside are not used: the feed is given the collection URL itself.
    contents = data.medallion_data(
        objects, api_root="bench", collection_id=collection_id, base_url="http://127.0.0.1"
    )
    data_file = workdir / "data.json"
    data_file.write_text(json.dumps(contents))
    config.write_text(
        json.dumps(
            {
                "backend": {
                    "module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend",
                    "filename": str(data_file),
                },
                "users": {"bench": "bench"},
                "taxii": {"max_page_size": 100},
            }
        )
    )
    server = ServerProcess("medallion", ["--config", str(config)], log_path=workdir / "medallion.log")
    stack.callback(server.stop)
    server.wait_ready("/taxii2/", auth=("bench", "bench"))
    return f"{server.url}/bench/collections/{collection_id}/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 lines / objects instead of 100,000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server for a throw-away database")
    args = parser.parse_args(argv)
    count, small = (10_000, 1_000) if args.quick else (100_000, 2_000)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    report = Report()
    problem = postgres_problem(args.pg_url) if "postgresql" in backends else None
    report.facts = machine_facts(
        ["-m", "benchmarks.feeds", *(argv if argv is not None else sys.argv[1:])],
        postgres_version(args.pg_url) if "postgresql" in backends and not problem else "not used",
    )
    workdir = Path(tempfile.mkdtemp(prefix="exchange-feed-bench-"))
    try:
        for backend in backends:
            if backend == "postgresql" and problem:
                report.error("7", "PostgreSQL", "PostgreSQL", f"skipped: {problem}")
                continue
            bench_backend(backend, count, small, report, workdir, args.pg_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for key, value in report.facts.items():
        print(f"{key}: {value}")
    print(report.render())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
