"""Benchmark the exchange's TAXII 2.1 server, side by side with medallion, on SQLite and PostgreSQL.

    .venv/bin/python -m benchmarks.bench            # full run (1M objects; ~15-25 min on 2 cores)
    .venv/bin/python -m benchmarks.bench --quick    # smoke run (20k objects; under 2 min)

Sections (see benchmarks/README.md for method and targets):
  1  taxii2-client pulls the same indicators from us and from medallion 3.0.0's memory backend
  2  taxii2-client pulls 1,000,000 objects in pages of 1,000: objects/s
  3  median 1,000-object page over HTTP at 10,000 and at 1,000,000 objects
  4  the floor: the same page from page_by_date_added joined into bytes; served / floor
  5  ingest rate of strictly validated indicators POSTed in 1,000-object envelopes
  6  a partner under an agreement pulls 100,000 objects of which half are withheld, vs 50,000
     all visible to it, vs the admin pulling the same 50,000: what filtering and the partner
     path (SQL predicates, the decide gate, signatures, disclosure ledger) cost
  7  feed ingest end to end on one core: a 100,000-line text feed and a 100,000-object TAXII
     feed (fetch, normalise, validate, store); a small TAXII feed from medallion side by side
     (benchmarks/feeds.py; also runnable alone as `python -m benchmarks.feeds`)

Everything runs on 127.0.0.1; servers run in their own processes; temporary directories and the
PostgreSQL database are removed at the end, also after errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench.py`
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import orjson
from sqlalchemy import event, select

from benchmarks import data, measure, partner
from benchmarks import feeds as feed_bench
from benchmarks.instance import Instance, postgres_problem, postgres_version
from benchmarks.report import Report, count, machine_facts, ms, secs, verdict
from benchmarks.servers import ServerProcess, ServerStartError
from exchange.agreement import service as agreement_service
from exchange.auth.service import Principal
from exchange.database.core import session_scope
from exchange.intel.models import Collection, ObjectVersion
from exchange.intel.query import ObjectFilter, page_by_date_added
from exchange.partner import service as partner_service
from exchange.sharing import access as agreement_access
from exchange.sharing import gate as agreement_gate

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MEDALLION_API_ROOT = "bench"
PULL_TARGET = 20_000  # objects/s
PAGE_GROWTH_TARGET = 1.5  # median page at the big size / at the small size
FLOOR_TARGET = 2.0  # served median / floor median
INGEST_TARGET = 1_500  # objects/s
FLAT_TARGET = 0.8  # slowest ingest point / fastest
PARTNER_FILTER_TARGET = 1.3  # partner's filtered pull (half withheld) / its unfiltered pull
PARTNER_ADMIN_TARGET = 1.5  # partner's pull / the admin's pull of the same objects
PARTNER_LARGE_TARGET = 25_000  # objects/s a partner receives from a large half-withheld collection


@dataclass
class Options:
    quick: bool
    backends: list[str]
    sections: set[str]
    objects: int
    small: int
    page_size: int
    page_samples: int
    ingest_points: list[int]
    ingest_envelopes: int
    envelope_size: int
    medallion_sizes: list[int]
    partner_objects: int
    partner_rounds: int
    partner_large: int
    medallion_budget: float
    pull_timeout: float
    pg_url: str
    seed: int
    json_path: Path | None


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 20k objects, medallion budget 20 s, fewer samples"
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma list of sqlite, postgresql (default: both)"
    )
    parser.add_argument("--sections", default="1,2,3,4,5,6,7", help="which sections to run (default: all)")
    parser.add_argument(
        "--objects",
        type=lambda s: int(s.replace("_", "")),
        help="size of the big collection (default 1,000,000; quick 20,000)",
    )
    parser.add_argument(
        "--small",
        type=lambda s: int(s.replace("_", "")),
        help="size at which the first page timings are taken (default 10,000)",
    )
    parser.add_argument("--page-size", type=int, default=1000, help="objects per page (default 1000)")
    parser.add_argument("--page-samples", type=int, help="pages timed at each size (default 41; quick 15)")
    parser.add_argument(
        "--ingest-points",
        type=_ints,
        help="collection sizes to measure ingest at (default 0,20000,50000; quick 0,5000,10000)",
    )
    parser.add_argument(
        "--ingest-envelopes", type=int, help="envelopes POSTed at each ingest point (default 9; quick 3)"
    )
    parser.add_argument("--envelope-size", type=int, default=1000, help="objects per envelope (default 1000)")
    parser.add_argument(
        "--medallion-sizes",
        type=_ints,
        help="collection sizes for the medallion comparison; the largest is the "
        "headline (default 250,500,1000,2000,4000,5000)",
    )
    parser.add_argument(
        "--medallion-budget",
        type=float,
        help="seconds medallion may use across all sizes (default 120; quick 20)",
    )
    parser.add_argument(
        "--partner-objects",
        type=lambda s: int(s.replace("_", "")),
        help="section 6: size of the collection half withheld from the partner, a "
        "multiple of 100 (default 100,000; quick 20,000)",
    )
    parser.add_argument(
        "--partner-rounds",
        type=int,
        help="section 6: times each of its three pulls is repeated, order alternating; "
        "medians are reported (default 3; quick 2)",
    )
    parser.add_argument(
        "--partner-large",
        type=lambda s: int(s.replace("_", "")),
        default=0,
        help="section 6: also let the partner pull a collection of this many objects (a multiple "
        "of 100, e.g. 1000000), half withheld, once, within --pull-timeout (default: not run)",
    )
    parser.add_argument(
        "--pull-timeout",
        type=float,
        help="give up a full pull of ours after this many seconds (default 900; quick 120)",
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG,
        help=f"PostgreSQL server to create the throw-away database on (default {DEFAULT_PG})",
    )
    parser.add_argument("--seed", type=int, default=2026, help="seed for generated content")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    quick = args.quick
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {backend!r}")
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if not sections <= {"1", "2", "3", "4", "5", "6", "7"}:
        parser.error("sections are 1-7")
    opts = Options(
        quick=quick,
        backends=backends,
        sections=sections,
        objects=args.objects or (20_000 if quick else 1_000_000),
        small=args.small or 10_000,
        page_size=args.page_size,
        page_samples=args.page_samples or (15 if quick else 41),
        ingest_points=sorted(args.ingest_points or ([0, 5_000, 10_000] if quick else [0, 20_000, 50_000])),
        ingest_envelopes=args.ingest_envelopes or (3 if quick else 9),
        envelope_size=args.envelope_size,
        medallion_sizes=sorted(args.medallion_sizes or [250, 500, 1000, 2000, 4000, 5000]),
        medallion_budget=args.medallion_budget
        if args.medallion_budget is not None
        else (20 if quick else 120),
        partner_objects=args.partner_objects or (20_000 if quick else 100_000),
        partner_rounds=args.partner_rounds or (2 if quick else 3),
        partner_large=args.partner_large,
        pull_timeout=args.pull_timeout or (120 if quick else 900),
        pg_url=args.pg_url,
        seed=args.seed,
        json_path=args.json_path,
    )
    if opts.small > opts.objects:
        parser.error("--small must not exceed --objects")
    if opts.small < 2 * opts.page_size:
        parser.error("--small must hold at least two pages")
    if opts.partner_objects % 100 or opts.partner_objects < 2 * opts.page_size:
        parser.error("--partner-objects must be a multiple of 100 and hold at least two pages")
    if opts.partner_large and (opts.partner_large % 100 or opts.partner_large < 2 * opts.page_size):
        parser.error("--partner-large must be a multiple of 100 and hold at least two pages")
    if opts.partner_rounds < 1:
        parser.error("--partner-rounds must be at least 1")
    return opts


# --- progress -------------------------------------------------------------------------------

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def _on_signal(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- set-up shared by the sections ----------------------------------------------------------


def prepare_loader(inst: Instance, opts: Options) -> data.BulkLoader:
    """Post one indicator through TAXII, check our bulk row matches the stored one, warm up."""
    scratch = inst.collection("bench-scratch")
    factory = data.IndicatorFactory(seed=opts.seed - 1)
    probe = factory.make()
    url = inst.objects_url(scratch)
    measure.post_envelopes(inst.client, url, [(orjson.dumps({"objects": [probe]}), 1)])
    tlp_rank = data.shape_check(inst.engine, collection_pk=scratch.pk, obj=probe, added_by=inst.auth[0])
    # Warm the ingest path (imports, pattern parser, key cache) outside any measurement.
    measure.post_envelopes(inst.client, url, [(orjson.dumps({"objects": factory.batch(1000)}), 1000)])
    log(f"{inst.label}: bulk rows match the rows ingest stores (all {len(data.COLUMNS)} columns)")
    return data.BulkLoader(inst.engine, tlp_rank=tlp_rank, added_by=inst.auth[0])


def settle(inst: Instance) -> None:
    """After a bulk load: what the database would have done by itself before real traffic.

    PostgreSQL: VACUUM ANALYZE (autovacuum's job; sets statistics and the visibility map).
    SQLite: a WAL checkpoint (automatic in normal operation).
    """
    with inst.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if inst.backend == "postgresql":
            conn.exec_driver_sql("VACUUM (ANALYZE) object_version")
            conn.exec_driver_sql("VACUUM (ANALYZE) collection")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def bulk(
    inst: Instance,
    loader: data.BulkLoader,
    coll: Collection,
    objects: Iterator[dict[str, Any]],
    n: int,
    what: str,
    report: Report,
) -> array:
    """Append `n` generated rows, let the database settle; returns their date_added values."""
    start = time.perf_counter()
    dates = loader.load(coll.pk, objects, n)
    elapsed = time.perf_counter() - start
    settle(inst)
    log(f"{inst.label}: bulk-loaded {n:,} rows ({what}) in {elapsed:.1f} s")
    report.note(
        f"{inst.label}: bulk-loaded {n:,} generated rows ({what}) in {secs(elapsed)} "
        f"({count(n / elapsed)} rows/s), then {'VACUUM ANALYZE' if inst.backend == 'postgresql' else 'WAL checkpoint'}"
    )
    return dates


# --- section 1: side by side with medallion -------------------------------------------------


def run_medallion(
    objects: list[dict[str, Any]], sizes: list[int], budget: float, workdir: Path
) -> tuple[dict[int, measure.PullResult | None], float]:
    """Pull each size from a fresh medallion process until the budget is spent.

    Returns the result per size (None: not attempted, budget gone) and the seconds used.
    """
    user, password = "bench", secrets.token_urlsafe(16)
    started = time.monotonic()
    deadline = started + budget
    results: dict[int, measure.PullResult | None] = {}
    for n in sizes:
        remaining = deadline - time.monotonic()
        if remaining < 1:
            results[n] = None
            log(f"medallion: {n:,} objects not attempted (budget spent)")
            continue
        collection_id = str(uuid.uuid4())
        data_file = workdir / f"medallion-{n}.json"
        data_file.write_bytes(
            orjson.dumps(
                data.medallion_data(
                    objects[:n],
                    api_root=MEDALLION_API_ROOT,
                    collection_id=collection_id,
                    base_url="http://127.0.0.1",
                )
            )
        )
        config = workdir / f"medallion-{n}.config.json"
        config.write_bytes(
            orjson.dumps(
                {
                    "backend": {
                        "module": "medallion.backends.memory_backend",
                        "module_class": "MemoryBackend",
                        "filename": str(data_file),
                    },
                    "users": {user: password},
                    "taxii": {"max_page_size": 100},
                }
            )
        )
        server = ServerProcess("medallion", ["--config", str(config)], log_path=workdir / "medallion.log")
        try:
            try:
                server.wait_ready(
                    "/taxii2/", auth=(user, password), timeout=max(1.0, deadline - time.monotonic())
                )
            except RuntimeError as exc:
                results[n] = measure.PullResult(error=f"did not start within the budget: {exc}"[:200])
                continue
            url = f"{server.url}/{MEDALLION_API_ROOT}/collections/{collection_id}/"
            log(f"medallion: pulling {n:,} objects ({deadline - time.monotonic():.0f} s of budget left)")
            result = measure.taxii_pull(
                url,
                (user, password),
                per_request=100,
                expected=n,
                expected_ids={o["id"] for o in objects[:n]},
                deadline_seconds=deadline - time.monotonic(),
                on_timeout=server.kill,
            )
            results[n] = result
            log(f"medallion: {n:,} objects: {f'{result.seconds:.2f} s' if result.finished else result.error}")
        finally:
            server.stop()
    return results, time.monotonic() - started


def _extrapolate(points: list[tuple[int, float]], n: int) -> tuple[float, float] | None:
    """Least-squares fit of log t = k log n + c over the measured points; (t(n), k)."""
    points = [(size, t) for size, t in points if t > 0.05]
    if len(points) < 2:
        return None
    xs = [math.log(size) for size, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=False)) / var
    return math.exp(my + k * (math.log(n) - mx)), k


def section_compare(
    inst: Instance, loader: data.BulkLoader, opts: Options, report: Report, workdir: Path
) -> None:
    sizes = opts.medallion_sizes
    objects = data.IndicatorFactory(seed=opts.seed + 1).batch(sizes[-1])
    ours: dict[int, measure.PullResult] = {}
    for n in sizes:
        coll = inst.collection(f"compare-{n}")
        loader.load(coll.pk, iter(objects[:n]), n)
        ours[n] = measure.taxii_pull(
            inst.collection_url(coll),
            inst.auth,
            per_request=100,
            expected=n,
            expected_ids={o["id"] for o in objects[:n]},
            deadline_seconds=opts.pull_timeout,
            on_timeout=inst.server.kill,
        )
        log(f"{inst.label}: pulled {n:,} objects in pages of 100 in {ours[n].seconds:.2f} s")
    theirs, used = run_medallion(objects, sizes, opts.medallion_budget, workdir)

    backend = f"{inst.label} vs medallion"
    measured: list[tuple[int, float]] = []
    first_unmeasured: int | None = None
    for n in sizes:
        mine, other = ours[n], theirs[n]
        if not mine.complete:
            report.error(
                "1",
                f"pull {n:,}, pages of 100",
                backend,
                f"exchange pull incomplete: {mine.objects:,}/{n:,} objects, "
                f"{mine.duplicates} duplicates, {mine.missing} missing, {mine.error}",
            )
            continue
        left = f"exchange {secs(mine.seconds)}"
        if other is None:
            first_unmeasured = first_unmeasured or n
            report.add(
                "1",
                f"pull {n:,}, pages of 100",
                backend,
                f"{left} | medallion: not attempted, budget spent",
                "",
                "n/a",
            )
        elif other.complete:
            measured.append((n, other.seconds))
            report.add(
                "1",
                f"pull {n:,}, pages of 100",
                backend,
                f"{left} | medallion {secs(other.seconds)} ({other.objects:,} objects, all present)",
                "",
                f"medallion {other.seconds / mine.seconds:,.0f}x slower",
            )
        elif other.finished:  # finished but wrong: say so loudly, it is medallion's answer
            first_unmeasured = first_unmeasured or n
            report.add(
                "1",
                f"pull {n:,}, pages of 100",
                backend,
                f"{left} | medallion {secs(other.seconds)} but returned {other.objects:,} objects, "
                f"{other.missing} missing, {other.duplicates} duplicates",
                "",
                "medallion WRONG",
            )
        else:
            first_unmeasured = first_unmeasured or n
            report.add(
                "1",
                f"pull {n:,}, pages of 100",
                backend,
                f"{left} | medallion > {secs(other.seconds)}: {other.error} "
                f"({other.objects:,}/{n:,} objects by then)",
                "",
                "medallion unmeasurable",
            )

    headline = sizes[-1]
    if first_unmeasured is None:
        report.add(
            "1",
            f"medallion measurable within {opts.medallion_budget:.0f} s budget",
            backend,
            f"every size up to {headline:,} ({secs(used)} used)",
        )
    else:
        largest = f"up to {measured[-1][0]:,} objects" if measured else "at no size"
        report.add(
            "1",
            f"medallion measurable within {opts.medallion_budget:.0f} s budget",
            backend,
            f"{largest}; stops being measurable at {first_unmeasured:,} ({secs(used)} used)",
        )
    mine, other = ours[headline], theirs[headline]
    if mine.complete and not (other is not None and other.complete):
        # The honest figure: a lower bound (the longest medallion ran at any size, since its
        # time only grows with size), plus a labelled extrapolation.
        bound = max([r.seconds for r in theirs.values() if r is not None] + [0.0])
        fit = _extrapolate(measured, headline)
        estimate = (
            f"; extrapolated ~{secs(fit[0])} (fit t ~ n^{fit[1]:.1f} over measured sizes)" if fit else ""
        )
        report.add(
            "1",
            f"{headline:,} indicators: exchange vs medallion",
            backend,
            f"exchange {secs(mine.seconds)} | medallion > {secs(bound)}{estimate}",
            "",
            f">= {bound / mine.seconds:,.0f}x" + (f", ~{fit[0] / mine.seconds:,.0f}x est." if fit else ""),
        )


# --- section 5: ingest ----------------------------------------------------------------------


def section_ingest(inst: Instance, loader: data.BulkLoader, opts: Options, report: Report) -> None:
    coll = inst.collection("bench-ingest")
    factory = data.IndicatorFactory(seed=opts.seed + 5)
    url = inst.objects_url(coll)
    filled = 0
    rates: list[float] = []
    for point in opts.ingest_points:
        if point > filled:
            bulk(inst, loader, coll, data.endless(factory), point - filled, "ingest filler", report)
            filled = point
        envelopes = [
            (orjson.dumps({"objects": factory.batch(opts.envelope_size)}), opts.envelope_size)
            for _ in range(opts.ingest_envelopes)
        ]
        result = measure.post_envelopes(inst.client, url, envelopes)
        # The median envelope, not the mean: one GC pause or scheduler hiccup on a 2-core
        # machine should not decide the figure (the overall rate is shown beside it).
        median = measure.Stats(result.envelope_seconds).median
        rate = opts.envelope_size / median
        rates.append(rate)
        log(f"{inst.label}: ingest at {filled:,}: {rate:,.0f} objects/s")
        report.add(
            "5",
            f"ingest, {opts.envelope_size:,}-object envelopes, at {filled:,} objects",
            inst.label,
            f"{count(rate)} objects/s (median envelope {ms(median)}, max "
            f"{ms(max(result.envelope_seconds))}; all {result.objects:,} in {secs(result.seconds)} = "
            f"{count(result.rate)}/s)",
            f">= {INGEST_TARGET:,}/s",
            verdict(rate >= INGEST_TARGET),
        )
        filled += result.objects
    if len(rates) > 1:
        flat = min(rates) / max(rates)
        report.add(
            "5",
            "ingest flatness: slowest point / fastest",
            inst.label,
            f"{flat:.2f}",
            f">= {FLAT_TARGET}",
            verdict(flat >= FLAT_TARGET),
        )


# --- sections 2, 3, 4: the big collection ---------------------------------------------------


@dataclass
class PageFigures:
    size: int
    http: measure.Stats | None = None
    floor: measure.Stats | None = None
    empty: measure.Stats | None = None


def sample_positions(n: int, opts: Options, rng: random.Random) -> list[int]:
    """Page start positions spread over the whole collection, in random order."""
    last = n - opts.page_size
    picks = {round(i * last / (opts.page_samples - 1)) for i in range(opts.page_samples)}
    positions = sorted(picks)
    rng.shuffle(positions)
    return positions


def time_pages(
    inst: Instance, coll: Collection, dates: array, opts: Options, rng: random.Random
) -> PageFigures:
    figures = PageFigures(size=len(dates))
    positions = sample_positions(len(dates), opts, rng)
    timers: dict[str, Callable[[int], float]] = {}
    if "3" in opts.sections or "4" in opts.sections:
        timers["http"] = measure.HttpPager(inst.client, inst.objects_url(coll), dates, limit=opts.page_size)
    if "4" in opts.sections:
        timers["floor"] = measure.FloorPager(inst.factory, coll.pk, dates, limit=opts.page_size)
    stats = measure.paired_times(timers, positions)
    figures.http, figures.floor = stats.get("http"), stats.get("floor")
    if figures.http:
        # The fixed cost of a request: an empty page (added_after = the newest object).
        empty = []
        for _ in range(max(5, opts.page_samples // 3)):
            start = time.perf_counter()
            response = inst.client.get(
                inst.objects_url(coll),
                params={"limit": opts.page_size, "added_after": measure.taxii_timestamp(dates[-1])},
            )
            empty.append(time.perf_counter() - start)
            if response.status_code != 200 or orjson.loads(response.content).get("objects"):
                raise RuntimeError(f"empty page: HTTP {response.status_code}, {response.text[:200]}")
        figures.empty = measure.Stats(empty)
    log(
        f"{inst.label}: pages at {len(dates):,}: "
        + (f"HTTP median {figures.http.median * 1000:.1f} ms " if figures.http else "")
        + (f"floor median {figures.floor.median * 1000:.1f} ms" if figures.floor else "")
    )
    return figures


def query_plan(inst: Instance, coll: Collection, after_us: int, limit: int) -> str:
    """The plan of the exact statement page_by_date_added sends (captured, then EXPLAINed)."""
    return captured_plan(
        inst,
        lambda db: page_by_date_added(
            db, collection_pk=coll.pk, flt=ObjectFilter(), after_us=after_us, limit=limit
        ),
    )


def captured_plan(inst: Instance, run: Callable[[Any], Any], *, shown: int | None = None) -> str:
    """Run `run(session)`, capture the last statement it sends, and EXPLAIN it; the statement is
    cut to its first `shown` characters in the text returned."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    event.listen(inst.engine, "before_cursor_execute", capture)
    try:
        with inst.factory() as db:
            run(db)
    finally:
        event.remove(inst.engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    explain = "EXPLAIN QUERY PLAN " if inst.backend == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    with inst.engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + statement, parameters).all()
    plan = "\n    ".join(str(r[-1]) for r in rows)
    text = " ".join(statement.split())
    if shown is not None and len(text) > shown:
        text = f"{text[:shown]} ... ({len(text):,} characters in all)"
    return f"{text}\n    {plan}"


def pull_row(
    report: Report, inst: Instance, result: measure.PullResult, n: int, opts: Options, *, target: bool
) -> None:
    measure_name = f"full pull {n:,} objects, taxii2-client, pages of {opts.page_size:,}"
    if not result.complete:
        report.error(
            "2",
            measure_name,
            inst.label,
            f"{result.objects:,}/{n:,} objects in {secs(result.seconds)} "
            f"({count(result.rate)}/s so far), {result.duplicates} duplicates, "
            f"{result.missing} missing; {result.error or ''}",
        )
        return
    pages = result.page_seconds
    tenth = max(1, len(pages) // 10)
    early, late = measure.Stats(pages[:tenth]).median, measure.Stats(pages[-tenth:]).median
    report.add(
        "2",
        measure_name,
        inst.label,
        f"{count(result.rate)} objects/s ({secs(result.seconds)}, all {n:,} received once; "
        f"page median first 10% {ms(early)}, last 10% {ms(late)})",
        f">= {PULL_TARGET:,}/s" if target else "(for reference)",
        verdict(result.rate >= PULL_TARGET) if target else "",
    )


def section_big(inst: Instance, loader: data.BulkLoader, opts: Options, report: Report) -> None:
    coll = inst.collection("bench-pull")
    objects = data.endless(data.IndicatorFactory(seed=opts.seed + 2))
    rng = random.Random(opts.seed)
    dates = bulk(inst, loader, coll, objects, opts.small, "pull collection", report)
    small = time_pages(inst, coll, dates, opts, rng)
    if "2" in opts.sections:
        result = measure.taxii_pull(
            inst.collection_url(coll),
            inst.auth,
            per_request=opts.page_size,
            expected=len(dates),
            deadline_seconds=opts.pull_timeout,
            on_timeout=inst.server.kill,
        )
        pull_row(report, inst, result, len(dates), opts, target=False)
    if opts.objects > opts.small:
        dates.extend(bulk(inst, loader, coll, objects, opts.objects - opts.small, "pull collection", report))
    big = time_pages(inst, coll, dates, opts, rng) if opts.objects > opts.small else small
    report.note(
        f"{inst.label}: page query plan at {len(dates):,} objects:\n    "
        + query_plan(inst, coll, dates[len(dates) // 2], opts.page_size)
    )

    for figures in (small, big) if big is not small else (small,):
        if figures.http:
            empty = f"; empty page {ms(figures.empty.median)}" if figures.empty else ""
            report.add(
                "3",
                f"median {opts.page_size:,}-object page over HTTP, at {figures.size:,}",
                inst.label,
                f"{ms(figures.http.median)} (p90 {ms(figures.http.quantile(0.9))}, max {ms(figures.http.max)}, "
                f"{len(figures.http.samples)} pages{empty})",
            )
        if figures.floor:
            report.add(
                "4",
                f"floor: page_by_date_added + join, at {figures.size:,}",
                inst.label,
                f"{ms(figures.floor.median)} (p90 {ms(figures.floor.quantile(0.9))})",
            )
        if figures.http and figures.floor:
            ratio = figures.http.median / figures.floor.median
            report.add(
                "4",
                f"served page / floor, at {figures.size:,}",
                inst.label,
                f"{ratio:.2f}x",
                f"<= {FLOOR_TARGET:.0f}x",
                verdict(ratio <= FLOOR_TARGET),
            )
    if big is not small and big.http and small.http:
        growth = big.http.median / small.http.median
        report.add(
            "3",
            f"page at {big.size:,} / page at {small.size:,}",
            inst.label,
            f"{growth:.2f}x",
            f"<= {PAGE_GROWTH_TARGET}x",
            verdict(growth <= PAGE_GROWTH_TARGET),
        )

    if "2" in opts.sections and opts.objects > opts.small:
        log(f"{inst.label}: full pull of {len(dates):,} objects with taxii2-client")
        result = measure.taxii_pull(
            inst.collection_url(coll),
            inst.auth,
            per_request=opts.page_size,
            expected=len(dates),
            deadline_seconds=opts.pull_timeout,
            on_timeout=inst.server.kill,
        )
        log(f"{inst.label}: full pull: {result.rate:,.0f} objects/s in {result.seconds:.1f} s")
        pull_row(report, inst, result, len(dates), opts, target=True)


# --- section 6: a partner under an agreement -----------------------------------------------


def _check_partner_rows(inst: Instance, probe_coll: Collection, seed: int) -> None:
    """POST one indicator of every kind; the rows the server stores must be the rows we write,
    including the TLP rank the harness reads from each marking (and NULL for no confidence)."""
    probes = partner.probes(seed)
    measure.post_envelopes(
        inst.client, inst.objects_url(probe_coll), [(orjson.dumps({"objects": probes}), len(probes))]
    )
    for obj in probes:
        stored = data.shape_check(inst.engine, collection_pk=probe_coll.pk, obj=obj, added_by=inst.auth[0])
        if stored != partner.rank_of(obj):
            raise AssertionError(
                f"the server stored TLP rank {stored} for {obj['object_marking_refs']}, "
                f"the harness would write {partner.rank_of(obj)}"
            )


def _median_pull(results: list[measure.PullResult]) -> float:
    return measure.Stats([r.seconds for r in results]).median


def _pulls_text(results: list[measure.PullResult]) -> str:
    """The median pull (rate and page median of the round closest to it), and every round."""
    median = _median_pull(results)
    typical = min(results, key=lambda r: abs(r.seconds - median))
    text = (
        f"{secs(median)} ({count(typical.rate)} objects/s, "
        f"page median {ms(measure.Stats(typical.page_seconds).median)})"
    )
    if len(results) > 1:
        text = f"median of {len(results)} rounds: {text}; rounds " + ", ".join(
            secs(r.seconds) for r in results
        )
    return text


def _wal_bytes(inst: Instance) -> int | None:
    """The size of the SQLite write-ahead log (None on PostgreSQL)."""
    if inst.backend != "sqlite":
        return None
    return sum(f.stat().st_size for f in Path(inst.settings.data_dir).glob("*-wal"))


def section_partner(inst: Instance, opts: Options, report: Report) -> None:
    n, half = opts.partner_objects, opts.partner_objects // 2
    probe_coll = inst.collection("bench-partner-probe")
    _check_partner_rows(inst, probe_coll, opts.seed - 6)
    log(f"{inst.label}: partner rows (every TLP level, confidence high/low/absent) match ingested ones")
    loader = data.BulkLoader(inst.engine, added_by=inst.auth[0], rank_of=partner.rank_of)

    mix = partner.mixed_collection(n, opts.seed + 6)
    mixed, visible = inst.collection("partner-mixed"), inst.collection("partner-visible")
    bulk(inst, loader, mixed, iter(mix.objects), n, "partner: half withheld", report)
    bulk(inst, loader, visible, iter(mix.visible), half, "partner: all visible", report)
    report.note(
        f"{inst.label}: section 6 mix of {n:,} (shuffled, seed {opts.seed + 6}): "
        + ", ".join(f"{kind.name} {mix.kinds[kind.name]:,}" for kind in partner.KINDS)
        + f"; the agreement lets the partner see {half:,} (TLP <= {partner.MAX_TLP}, confidence >= "
        f"{partner.MIN_CONFIDENCE}); the second collection holds those {half:,}, same order"
    )

    document = partner.agreement([mixed.alias, visible.alias])
    with session_scope(inst.factory, write=True) as db:
        _, credential, key = partner_service.create(
            db, slug=partner.PARTNER_SLUG, name="Benchmark partner CERT", country="IN", actor=inst.auth[0]
        )
        applied = agreement_service.apply(db, document, actor=inst.auth[0], source="benchmark")
        partner_auth = (credential.id, key)
        partner_pk = credential.partner_pk

    # The agreement is in force: the partner sees exactly its two collections, both readable.
    listed = inst.client.get(
        f"{inst.server.url}/taxii2/{inst.settings.api_root}/collections/", auth=partner_auth
    )
    if listed.status_code != 200:
        raise RuntimeError(f"partner's collection list: HTTP {listed.status_code}: {listed.text[:200]}")
    seen = {c["alias"]: c["can_read"] for c in listed.json().get("collections", [])}
    if seen != {mixed.alias: True, visible.alias: True}:
        raise AssertionError(f"the partner's collection list is {seen}, expected exactly the two agreed ones")

    expected_ids = {obj["id"] for obj in mix.visible}
    pulls = [
        ("filtered", mixed, partner_auth),
        ("unfiltered", visible, partner_auth),
        ("admin", visible, inst.auth),
    ]
    results: dict[str, list[measure.PullResult]] = {name: [] for name, _, _ in pulls}
    first_ledger: partner.Ledger | None = None
    wal_sizes: list[str] = []
    for round_ in range(opts.partner_rounds):
        for name, coll, auth in pulls if round_ % 2 == 0 else reversed(pulls):
            result = measure.taxii_pull(
                inst.collection_url(coll),
                auth,
                per_request=opts.page_size,
                expected=half,
                expected_ids=expected_ids,
                deadline_seconds=opts.pull_timeout,
                on_timeout=inst.server.kill,
            )
            if not result.complete or result.objects != half:
                raise RuntimeError(
                    f"{name} pull (round {round_ + 1}) wrong: {result.objects:,}/{half:,} objects, "
                    f"{result.duplicates} duplicates, {result.missing} missing, {result.unexpected} not allowed; "
                    f"{result.error or ''}"
                )
            results[name].append(result)
            wal = _wal_bytes(inst)
            if wal is not None:
                wal_sizes.append(f"{name} {wal / 2**20:,.0f}")
            log(
                f"{inst.label}: round {round_ + 1}: {name} pull of {half:,} in {result.seconds:.2f} s"
                + (f" (WAL {wal / 2**20:,.0f} MiB)" if wal is not None else "")
            )
        if first_ledger is None:
            first_ledger = partner.ledger(inst.engine, [mixed.pk, visible.pk])
    final_ledger = partner.ledger(inst.engine, [mixed.pk, visible.pk])
    assert first_ledger is not None

    filtered, unfiltered, admin = (_median_pull(results[k]) for k in ("filtered", "unfiltered", "admin"))
    rounds = opts.partner_rounds
    report.add(
        "6",
        f"partner pulls {n:,}, half withheld ({half:,} served), pages of {opts.page_size:,}",
        inst.label,
        f"{_pulls_text(results['filtered'])}; exactly the {half:,} allowed ids, each once",
    )
    report.add(
        "6", f"partner pulls {half:,}, all visible to it", inst.label, _pulls_text(results["unfiltered"])
    )
    per_round = [
        f.seconds / u.seconds for f, u in zip(results["filtered"], results["unfiltered"], strict=False)
    ]
    ratio = filtered / unfiltered
    report.add(
        "6",
        "partner: filtered pull / unfiltered pull",
        inst.label,
        f"{ratio:.2f}x" + (f" (per round {', '.join(f'{r:.2f}' for r in per_round)})" if rounds > 1 else ""),
        f"<= {PARTNER_FILTER_TARGET}x",
        verdict(ratio <= PARTNER_FILTER_TARGET),
    )
    report.add("6", f"admin pulls the same {half:,}", inst.label, _pulls_text(results["admin"]))
    report.add(
        "6",
        f"partner path: partner / admin pull of the same {half:,}",
        inst.label,
        f"{unfiltered / admin:.2f}x (policy predicates, decide gate, page signatures, ledger rows)",
        f"<= {PARTNER_ADMIN_TARGET}x",
        verdict(unfiltered / admin <= PARTNER_ADMIN_TARGET),
    )
    expected_rows = 2 * half
    ledger_ok = (
        first_ledger.rows == expected_rows
        and first_ledger.by_collection == {mixed.pk: half, visible.pk: half}
        and first_ledger.distinct_versions == {mixed.pk: half, visible.pk: half}
        and final_ledger.rows == rounds * expected_rows
        and final_ledger.not_allowed == 0
    )
    report.add(
        "6",
        "disclosure ledger rows",
        inst.label,
        f"{first_ledger.rows:,} after the first filtered + unfiltered pull ({half:,} distinct versions "
        f"per collection); {final_ledger.rows:,} after {rounds} round{'s' if rounds > 1 else ''}; "
        f"{final_ledger.not_allowed} rows for withheld objects",
        f"{expected_rows:,}; {rounds * expected_rows:,}; 0",
        "OK" if ledger_ok else "WRONG",
    )
    if not ledger_ok:
        report.failed = True

    # The plan of the partner's page query, built the way the server builds it.
    principal = Principal(
        credential_id=partner_auth[0],
        name="plan",
        role="partner",
        partner_pk=partner_pk,
        partner_slug=partner.PARTNER_SLUG,
    )
    with inst.engine.connect() as conn:
        middle = conn.scalar(
            select(ObjectVersion.date_added_us)
            .where(ObjectVersion.collection_pk == mixed.pk)
            .order_by(ObjectVersion.date_added_us)
            .offset(n // 2)
            .limit(1)
        )

    def partner_page(db: Any) -> Any:
        grant = agreement_access.collection_access(db, principal, db.get(Collection, mixed.pk))
        assert grant is not None and grant.read_grant is not None, "the agreement grants no read"
        columns = (*agreement_gate.GATE_COLUMNS, ObjectVersion.body)
        return page_by_date_added(
            db,
            collection_pk=mixed.pk,
            flt=ObjectFilter(),
            after_us=middle,
            limit=opts.page_size,
            columns=columns,
            extra=grant.predicates,
        )

    if opts.partner_large:
        _partner_large(inst, opts, report, document, partner_auth)

    if wal_sizes:
        # Ledger rows are written while the request's read transaction is still open, so an
        # automatic checkpoint never finds the log free to restart: it grows while pulls last.
        report.note(f"{inst.label}: WAL file after each section 6 pull, MiB: {', '.join(wal_sizes)}")
    report.note(f"{inst.label}: agreement v{applied.version} as applied: {orjson.dumps(document).decode()}")
    report.note(
        f"{inst.label}: the partner's page query on the half-withheld collection, mid-way:\n    "
        + captured_plan(inst, partner_page, shown=700)
    )


def _partner_large(
    inst: Instance, opts: Options, report: Report, document: dict[str, Any], partner_auth: tuple[str, str]
) -> None:
    """The partner pulls, once, a collection of opts.partner_large objects of which it may see half."""
    n, half = opts.partner_large, opts.partner_large // 2
    large = inst.collection("partner-large")
    # The agreement grows to the new collection while it is empty, so the change reveals nothing
    # (no stream releases): the pull below reads stored versions only, as a first pull does.
    grown = dict(
        document, read=dict(document["read"], collections=[*document["read"]["collections"], large.alias])
    )
    with session_scope(inst.factory, write=True) as db:
        agreement_service.apply(db, grown, actor=inst.auth[0], source="benchmark")
    stream = partner.mixed_stream(n, opts.seed + 7)
    loader = data.BulkLoader(inst.engine, added_by=inst.auth[0], rank_of=partner.rank_of)
    bulk(inst, loader, large, iter(stream), n, "partner: large, half withheld", report)
    if len(stream.visible_ids) != half:
        raise AssertionError(f"the large mix leaves {len(stream.visible_ids):,} of {n:,} visible, not half")
    result = measure.taxii_pull(
        inst.collection_url(large),
        partner_auth,
        per_request=opts.page_size,
        expected=half,
        expected_ids=stream.visible_ids,
        deadline_seconds=opts.pull_timeout,
        on_timeout=inst.server.kill,
    )
    log(f"{inst.label}: partner pull of {half:,} of {n:,} in {result.seconds:.1f} s")
    what = f"partner pulls {n:,}, half withheld ({half:,} served), pages of {opts.page_size:,}"
    if not result.complete:
        report.error(
            "6",
            what,
            inst.label,
            f"incomplete after {result.seconds:.0f} s: {result.objects:,}/{half:,} objects, "
            f"{result.duplicates} duplicates, {result.missing} missing, {result.unexpected} not allowed; "
            f"{result.error or ''}",
        )
        return
    pages = result.page_seconds
    tenth = max(1, len(pages) // 10)
    report.add(
        "6",
        what,
        inst.label,
        f"{count(result.rate)} objects/s ({secs(result.seconds)}; page median first 10 % "
        f"{ms(measure.Stats(pages[:tenth]).median)}, last 10 % {ms(measure.Stats(pages[-tenth:]).median)}); "
        f"exactly the {half:,} allowed ids, each once",
        f">= {count(PARTNER_LARGE_TARGET)}/s",
        verdict(result.rate >= PARTNER_LARGE_TARGET),
    )
    rows = partner.ledger(inst.engine, [large.pk])
    ok = rows.by_collection.get(large.pk) == half and rows.distinct_versions.get(large.pk) == half
    report.add(
        "6",
        f"disclosure ledger rows for the {n:,} pull",
        inst.label,
        f"{rows.by_collection.get(large.pk, 0):,} rows, {rows.distinct_versions.get(large.pk, 0):,} distinct versions",
        f"{half:,}; {half:,}",
        "OK" if ok else "WRONG",
    )
    if not ok:
        report.failed = True


# --- orchestration --------------------------------------------------------------------------


def _guarded(
    report: Report, section: str, what: str, inst: Instance, fn: Callable[..., None], *args: Any
) -> bool:
    """Run one section; an error becomes a table row. False when the server is gone."""
    try:
        fn(*args)
    except Exception as exc:
        traceback.print_exc()
        report.error(section, what, inst.label, f"{type(exc).__name__}: {exc}")
        if not inst.server_alive():
            report.note(f"{inst.label}: server exited; its log ends:\n{inst.server.log_tail()}")
            return False
    return True


def run_backend(backend: str, opts: Options, report: Report, workdir: Path, *, compare: bool) -> None:
    with ExitStack() as stack:
        log(f"{backend}: creating a fresh exchange")
        inst = Instance(backend, workdir / backend, stack, pg_admin_url=opts.pg_url)
        log(
            f"{inst.label}: server pid {inst.server.pid} on {inst.server.url} "
            f"(ready in {inst.startup_seconds:.1f} s)"
        )
        try:
            loader = prepare_loader(inst, opts)
        except Exception as exc:
            traceback.print_exc()
            report.error("0", "set-up and bulk-row shape check", inst.label, f"{type(exc).__name__}: {exc}")
            return
        steps = []
        if compare:
            steps.append(
                ("1", "side by side with medallion", section_compare, (inst, loader, opts, report, workdir))
            )
        if "5" in opts.sections:
            steps.append(("5", "ingest", section_ingest, (inst, loader, opts, report)))
        if opts.sections & {"2", "3", "4"}:
            steps.append(("2", "big collection", section_big, (inst, loader, opts, report)))
        if "6" in opts.sections:  # last: sections 1-5 run on a database as before section 6 existed
            steps.append(("6", "partner pulls under an agreement", section_partner, (inst, opts, report)))
        for section, what, fn, args in steps:
            if not _guarded(report, section, what, inst, fn, *args):
                break
        tail = inst.server.log_tail(15).strip()
        if tail:
            report.note(f"{inst.label}: server log (last lines):\n{tail}")


def print_report(report: Report, opts: Options) -> None:
    report.rows.sort(key=lambda r: r.section)  # stable: keeps backend order within a section
    out = ["", "== Exchange TAXII 2.1 benchmark =="]
    out += [f"{k:11} {v}" for k, v in report.facts.items()]
    out += ["", report.render()]
    if report.notes:
        out += ["", "Notes:"] + [f"- {n}" for n in report.notes]
    print("\n".join(out), flush=True)
    if opts.json_path:
        opts.json_path.parent.mkdir(parents=True, exist_ok=True)
        opts.json_path.write_text(json.dumps(report.as_dict(), indent=2))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # respect nohup
        signal.signal(signal.SIGHUP, _on_signal)
    report = Report()
    problem = postgres_problem(opts.pg_url) if "postgresql" in opts.backends else None
    pg = "not used"
    if "postgresql" in opts.backends:
        pg = postgres_version(opts.pg_url) if problem is None else f"unreachable ({problem})"
    shown = sys.argv[1:] if argv is None else argv
    command = [sys.argv[0], *shown] if __package__ in (None, "") else ["-m", "benchmarks.bench", *shown]
    report.facts = machine_facts(command, pg)
    report.facts["mode"] = (
        f"{'quick' if opts.quick else 'full'}: big collection {opts.objects:,}, small {opts.small:,}, "
        f"pages of {opts.page_size:,}, {opts.page_samples} page samples, ingest at "
        f"{','.join(map(str, opts.ingest_points))} x {opts.ingest_envelopes} envelopes, medallion sizes "
        f"{','.join(map(str, opts.medallion_sizes))} within {opts.medallion_budget:.0f} s, partner "
        f"collection {opts.partner_objects:,} x {opts.partner_rounds} rounds"
    )
    data.check_canonical(data.IndicatorFactory(seed=opts.seed).batch(200))
    workdir = Path(tempfile.mkdtemp(prefix="exchange-bench-"))
    interrupted = False
    try:
        compare_pending = "1" in opts.sections
        for backend in opts.backends:
            if backend == "postgresql" and problem is not None:
                report.error("0", "PostgreSQL", "PostgreSQL", f"skipped: {problem}")
                continue
            try:
                if opts.sections - {"7"}:
                    run_backend(backend, opts, report, workdir, compare=compare_pending)
                if "7" in opts.sections:
                    feed_bench.bench_backend(
                        backend,
                        10_000 if opts.quick else 100_000,
                        1_000 if opts.quick else 2_000,
                        report,
                        workdir / f"feeds-{backend}",
                        opts.pg_url,
                    )
            except Exception as exc:  # set-up failed; the table says so, the next backend runs
                traceback.print_exc()
                label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
                report.error("0", "set-up", label, f"{type(exc).__name__}: {exc}")
                if isinstance(exc, ServerStartError):
                    report.note(f"{label}: the server did not start; its log ends:\n{exc.log_tail}")
                continue
            compare_pending = False
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.facts["wall time"] = f"{time.monotonic() - _T0:.0f} s" + (" (INTERRUPTED)" if interrupted else "")
    print_report(report, opts)
    if interrupted:
        return 130
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
