"""Timed operations, each as a client sees it: full pulls, single pages, the floor, ingest."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from sqlalchemy.orm import Session, sessionmaker

from exchange.intel.query import ObjectFilter, page_by_date_added

TAXII_MEDIA = "application/taxii+json;version=2.1"


def taxii_timestamp(us: int) -> str:
    """A TAXII timestamp with microsecond precision (what added_after takes)."""
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


@dataclass
class Stats:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def max(self) -> float:
        return max(self.samples)


# --- full pulls with taxii2-client ----------------------------------------------------------


@dataclass
class PullResult:
    """What one taxii2-client pull of a whole collection got, and how long it took."""

    objects: int = 0
    pages: int = 0
    seconds: float = 0.0
    finished: bool = False
    error: str | None = None
    duplicates: int = 0
    missing: int = 0  # expected ids not received (when the expected set is known)
    unexpected: int = 0  # ids received that are not in the expected set (when it is known)
    page_seconds: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        return (
            self.finished
            and not self.error
            and not self.duplicates
            and not self.missing
            and not self.unexpected
        )


def taxii_pull(
    collection_url: str,
    auth: tuple[str, str],
    *,
    per_request: int,
    expected: int,
    expected_ids: set[str] | None = None,
    deadline_seconds: float,
    on_timeout: Callable[[], None],
) -> PullResult:
    """Pull every object with `as_pages(collection.get_objects, per_request=...)`, in a client
    process of its own (`benchmarks.pull_client`: what a partner runs holds nothing of ours).

    Past the deadline `on_timeout` is called (it kills the server, which ends the client's
    request), the client is stopped, and the partial result is returned.
    """
    result = PullResult()
    with tempfile.TemporaryDirectory(prefix="taxii-pull-") as workdir:
        request: dict[str, Any] = {
            "url": collection_url,
            "user": auth[0],
            "password": auth[1],
            "per_request": per_request,
            "expected_ids": None,
        }
        if expected_ids is not None:
            ids_path = Path(workdir) / "expected-ids"
            ids_path.write_text("".join(f"{i}\n" for i in expected_ids), encoding="ascii")
            request["expected_ids"] = str(ids_path)
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.pull_client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(orjson.dumps(request))
        child.stdin.close()
        outcome: dict[str, Any] = {}
        started = time.perf_counter()

        def read(stream: IO[bytes]) -> None:
            for line in stream:
                kind, _, rest = line.decode().strip().partition(" ")
                if kind == "page":
                    objects, seconds = rest.split()
                    result.objects += int(objects)
                    result.pages += 1
                    result.page_seconds.append(float(seconds))
                elif kind == "done":
                    outcome.update(orjson.loads(rest))

        reader = threading.Thread(target=read, args=(child.stdout,), name="taxii-pull", daemon=True)
        reader.start()
        reader.join(timeout=max(0.0, deadline_seconds))
        if reader.is_alive():
            on_timeout()
            child.kill()
            reader.join(timeout=30)
            result.seconds = time.perf_counter() - started
            result.error = f"stopped after {result.seconds:.1f} s (time budget spent)"
            child.wait()
            return result
        child.wait()
    if not outcome:
        result.seconds = time.perf_counter() - started
        result.error = f"the pull client exited with status {child.returncode} and no result"
        return result
    result.seconds = outcome["seconds"]
    result.error = outcome["error"]
    result.finished = outcome["finished"]
    result.duplicates = outcome["duplicates"]
    if expected_ids is not None:
        result.missing, result.unexpected = outcome["missing"], outcome["unexpected"]
    elif result.finished:
        result.missing = max(0, expected - (result.objects - result.duplicates))
    return result


# --- single pages over HTTP and straight from the store -------------------------------------


class HttpPager:
    """Times one `limit`-object page over HTTP (request sent to body fully read).

    Pages are addressed with added_after = the date_added of the object before the position;
    each answer is checked (page size, first date_added) after its timer stops.
    """

    def __init__(self, client: httpx.Client, objects_url: str, dates: Sequence[int], *, limit: int) -> None:
        self._client, self._url, self._dates, self._limit = client, objects_url, dates, limit

    def __call__(self, position: int) -> float:
        dates = self._dates
        params: dict[str, Any] = {"limit": self._limit}
        if position > 0:
            params["added_after"] = taxii_timestamp(dates[position - 1])
        start = time.perf_counter()
        response = self._client.get(self._url, params=params)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"page at {position}: HTTP {response.status_code}: {response.text[:300]}")
        got = len(orjson.loads(response.content).get("objects", []))
        want = min(self._limit, len(dates) - position)
        if got != want:
            raise RuntimeError(f"page at {position}: {got} objects, expected {want}")
        first = response.headers.get("X-TAXII-Date-Added-First")
        if first != taxii_timestamp(dates[position]):
            raise RuntimeError(
                f"page at {position}: X-TAXII-Date-Added-First {first}, "
                f"expected {taxii_timestamp(dates[position])}"
            )
        return elapsed


class FloorPager:
    """Times the same page selected with page_by_date_added and joined into envelope bytes.

    A session per page, as the server opens one per request; no HTTP, auth or Flask.
    """

    def __init__(
        self, factory: sessionmaker[Session], collection_pk: int, dates: Sequence[int], *, limit: int
    ) -> None:
        self._factory, self._pk, self._dates, self._limit = factory, collection_pk, dates, limit

    def __call__(self, position: int) -> float:
        after = self._dates[position - 1] if position > 0 else None
        start = time.perf_counter()
        with self._factory() as db:
            rows, more = page_by_date_added(
                db, collection_pk=self._pk, flt=ObjectFilter(), after_us=after, limit=self._limit
            )
            payload = b"".join(
                (
                    b'{"more":',
                    b"true" if more else b"false",
                    b',"objects":[',
                    ",".join(row.body for row in rows).encode(),
                    b"]}",
                )
            )
        elapsed = time.perf_counter() - start
        if len(rows) != min(self._limit, len(self._dates) - position) or not payload:
            raise RuntimeError(f"floor page at {position}: {len(rows)} rows")
        return elapsed


def paired_times(
    timers: dict[str, Callable[[int], float]], positions: Sequence[int], *, warmup: int = 3
) -> dict[str, Stats]:
    """Time every timer at every position, interleaved (order alternating per position), so
    that drift in the machine's load hits all of them alike and their ratio stays fair."""
    names = list(timers)
    for position in positions[:warmup]:
        for name in names:
            timers[name](position)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i, position in enumerate(positions):
        for name in names if i % 2 == 0 else reversed(names):
            samples[name].append(timers[name](position))
    return {name: Stats(values) for name, values in samples.items()}


# --- ingest over HTTP -----------------------------------------------------------------------


@dataclass
class IngestResult:
    objects: int
    seconds: float
    envelope_seconds: list[float]

    @property
    def rate(self) -> float:
        return self.objects / self.seconds


def post_envelopes(
    client: httpx.Client, objects_url: str, envelopes: Sequence[tuple[bytes, int]]
) -> IngestResult:
    """POST pre-serialised envelopes one after another; every object must be a success."""
    times = []
    total = 0
    for body, count in envelopes:
        start = time.perf_counter()
        response = client.post(objects_url, content=body, headers={"Content-Type": TAXII_MEDIA})
        elapsed = time.perf_counter() - start
        if response.status_code not in (200, 202):
            raise RuntimeError(f"POST: HTTP {response.status_code}: {response.text[:300]}")
        status = response.json()
        if status.get("success_count") != count or status.get("failure_count"):
            failures = status.get("failures", [])[:2]
            raise RuntimeError(
                f"POST: {status.get('success_count')} of {count} stored, "
                f"{status.get('failure_count')} failed, e.g. {failures}"
            )
        times.append(elapsed)
        total += count
    return IngestResult(objects=total, seconds=sum(times), envelope_seconds=times)
