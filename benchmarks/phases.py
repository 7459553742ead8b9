"""Where a page's time goes inside the server, timed by the server itself.

    BENCH_PHASES=/tmp/phases.txt .venv/bin/python -m benchmarks.bench --backends postgresql --sections 6
    .venv/bin/python -m benchmarks.phases /tmp/phases.txt

With BENCH_PHASES set, the benchmark's exchange server (benchmarks/servers.py) wraps the steps
of a TAXII page in timers and appends one line per step to that file (name, start, seconds),
plus one per garbage collection. The report groups the lines by request (each step inside one
`wsgi_app` call), splits partner pages (those that ran `keyset_page`) from administrator pages,
and prints each step's median and 90th percentile, and the gap between one request's end and the
next one's start (the client's side of the loop).

Why not a sampling profiler: py-spy stops the whole process for every sample, which stretches
every wait it catches (a 0.3 ms hand-over to the event loop showed as 12 ms a page), and
pyinstrument runs in-process without HTTP. These timers cost a few microseconds a step.
"""

from __future__ import annotations

import collections
import gc
import statistics
import sys
import time
from typing import Any

# (module, owner attribute or None for a module function, name)
STEPS = [
    ("flask.app", "Flask", "wsgi_app"),
    ("taxii_server.auth", None, "authenticate_request"),
    ("taxii_server.backend", "SqlBackend", "get_api_root_information"),
    ("taxii_server.backend", "SqlBackend", "_resolve"),
    ("taxii_server.backend", "SqlBackend", "get_objects"),
    ("taxii_server.backend", "SqlBackend", "_page"),
    ("exchange.intel.query", None, "keyset_page"),
    ("exchange.intel.query", None, "page_by_date_added"),
    ("exchange.sharing.outbound", None, "_pending_releases"),
    ("exchange.sharing.gate", None, "check"),
    ("taxii_server.backend", "SqlBackend", "_serve"),
    ("taxii_server.backend", "SqlBackend", "_signed"),
    ("taxii_server.backend", "_Ledger", "wait"),
]


def install(path: str) -> None:
    """Time every step in STEPS, and every garbage collection, into `path` (benchmark servers only)."""
    import importlib

    out = open(path, "a", buffering=1, encoding="ascii")  # noqa: SIM115  # the server's lifetime

    def timed(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        def step(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                out.write(f"{name} {started:.6f} {time.perf_counter() - started:.6f}\n")

        setattr(owner, name, step)

    for module, owner, name in STEPS:
        target = importlib.import_module(module)
        timed(getattr(target, owner) if owner else target, name)
    collecting: dict[str, float] = {}

    def collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting["at"] = time.perf_counter()
        else:
            at = collecting.get("at", time.perf_counter())
            out.write(f"gc{info['generation']} {at:.6f} {time.perf_counter() - at:.6f}\n")

    gc.callbacks.append(collection)


def report(path: str) -> str:
    events = []
    with open(path, encoding="ascii") as handle:
        for line in handle:
            name, start, seconds = line.split()
            events.append((name, float(start), float(seconds)))
    events.sort(key=lambda e: e[1])
    requests = [(start, start + seconds) for name, start, seconds in events if name == "wsgi_app"]
    steps: dict[str, dict[str, list[float]]] = {
        who: collections.defaultdict(list) for who in ("partner", "admin")
    }
    gaps: dict[str, list[float]] = {"partner": [], "admin": []}
    collections_total: dict[str, list[float]] = collections.defaultdict(list)
    previous_end = None
    index = 0
    for begin, end in requests:
        while index < len(events) and events[index][1] < begin:
            index += 1
        inside: dict[str, float] = collections.defaultdict(float)
        probe = index
        while probe < len(events) and events[probe][1] <= end:
            name, _, seconds = events[probe]
            if name != "wsgi_app":
                inside[name] += seconds
            probe += 1
        if "get_objects" in inside:
            who = "partner" if "keyset_page" in inside else "admin"
            inside["wsgi_app"] = end - begin
            for name, seconds in inside.items():
                steps[who][name].append(seconds)
            if previous_end is not None and begin - previous_end < 0.5:
                gaps[who].append(begin - previous_end)
        previous_end = end
    for name, _, seconds in events:
        if name.startswith("gc"):
            collections_total[name].append(seconds)
    lines = []
    for who, found in steps.items():
        pages = len(found.get("wsgi_app", []))
        if not pages:
            continue
        gap = f"{statistics.median(gaps[who]) * 1000:.2f} ms" if gaps[who] else "n/a"
        lines.append(f"{who}: {pages} pages; gap before the next request, median {gap}")
        for name, samples in sorted(found.items(), key=lambda kv: -statistics.median(kv[1])):
            if name.startswith("gc"):
                continue
            ordered = sorted(samples)
            lines.append(
                f"  {name:26} median {statistics.median(ordered) * 1000:7.2f} ms"
                f"  mean {statistics.fmean(ordered) * 1000:7.2f} ms"
                f"  p90 {ordered[int(0.9 * (len(ordered) - 1))] * 1000:7.2f} ms  ({len(ordered)} pages)"
            )
    for name, samples in sorted(collections_total.items()):
        lines.append(f"{name}: {len(samples)} collections, {sum(samples) * 1000:.1f} ms in all")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(report(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
