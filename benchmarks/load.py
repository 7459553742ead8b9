"""Load: many partners poll at once, each under its own agreement, while analysts publish and a
feed ingests; every partner's stream is checked for objects missed or repeated.

    .venv/bin/python -m benchmarks.load                                # 50 partners, 60 s, 1 and 2 workers, both databases
    .venv/bin/python -m benchmarks.load --partners 10 --seconds 10 --workers 1 --db sqlite   # a smoke run

Everything runs on 127.0.0.1 and stops by itself. The exchange runs as `exchange serve
--workers N --no-scheduler` (uvicorn's supervisor and N API processes on one socket; with 1,
`exchange serve` in one process). Each partner is an asyncio task with its own
connection that polls each collection its agreement grants with `added_after` = the last
`X-TAXII-Date-Added-Last` it saw, following `next` while `more`, as taxii2-client's `as_pages`
does. Analysts publish incidents (and new versions of them) over REST; a feed process runs a
`text` feed from a loopback HTTP server whose list grows on every fetch, exactly as
`exchange feed run` runs it. At the end the writers stop, each partner polls until its stream
is empty and then pulls every collection in full, and the harness checks, per partner:

- missed: an object version in the final full pull that the polls never delivered;
- repeated: an object version the polls delivered more than once;
- ledger: the disclosure ledger holds exactly what was served to the partner's credential;
- leaks: no ledger row breaks the partner's agreement (TLP ceiling with unmarked objects at the
  collection's default, types, minimum confidence, audience, collections), read from the rows'
  own columns, not with the server's policy code;
- indicators: the latest version of every indicator the rows' columns allow is what the polls
  hold (an indicator references nothing, so no closure rule applies to it).

Any failed check, any request not answered 200 and any publish not answered 201 is an error and
makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import httpx
from sqlalchemy import func, select

from benchmarks.instance import create_postgres_database, postgres_problem, postgres_version
from benchmarks.report import machine_facts
from exchange.agreement import service as agreement_service
from exchange.auth import service as auth_service
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.disclosure.models import Delivery, Disclosure
from exchange.feed import service as feed_service
from exchange.feed.schemas import FeedCreate
from exchange.intel.models import Collection, ObjectVersion
from exchange.partner import service as partner_service
from exchange.partner.models import Partner

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).with_name("exchange"))
TAXII = "application/taxii+json;version=2.1"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LEVELS = ("clear", "green", "amber", "amber+strict", "red")
RANK = {level: i for i, level in enumerate(LEVELS)}
COLLECTIONS = ("incidents", "indicators")
ALL_TYPES = [
    "indicator",
    "incident",
    "report",
    "relationship",
    "identity",
    "marking-definition",
    "extension-definition",
]
_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --- the partners' agreements -------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One partner's read grant; the 50 partners cycle through differing combinations."""

    slug: str
    collections: tuple[str, ...]
    max_tlp: str
    types: tuple[str, ...] | None  # None: every type
    min_confidence: int | None

    def document(self) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        read: dict[str, Any] = {"collections": list(self.collections), "max_tlp": self.max_tlp}
        if self.types is not None:
            read["types"] = list(self.types)
        if self.min_confidence is not None:
            read["min_confidence"] = self.min_confidence
        return {
            "partner": self.slug,
            "title": f"Load benchmark agreement for {self.slug}",
            "status": "active",
            "valid_from": (today - timedelta(days=30)).isoformat(),
            "valid_until": (today + timedelta(days=365)).isoformat(),
            "read": read,
        }


def profiles(n: int) -> list[Profile]:
    ceilings = ("clear", "green", "amber", "amber+strict")
    colls = (COLLECTIONS, ("incidents",), ("indicators",))
    typesets: tuple[tuple[str, ...] | None, ...] = (
        None,
        ("indicator", "identity", "marking-definition"),
        ("indicator", "incident", "report", "relationship", "identity", "marking-definition"),
    )
    confidences = (None, 50, 80)
    return [
        Profile(
            slug=f"load-p{i:03d}",
            collections=colls[(i // 4) % 3],
            max_tlp=ceilings[i % 4],
            types=typesets[(i // 3) % 3],
            min_confidence=confidences[(i // 5) % 3],
        )
        for i in range(n)
    ]


# --- the exchange under test --------------------------------------------------------------


class Workers:
    """`exchange serve --workers N` on a free 127.0.0.1 port (uvicorn's supervisor and N API
    processes on one socket; with 1, uvicorn in the one process), without the scheduler."""

    def __init__(self, count: int, settings: Settings, log_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.count = count
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
        env.update(
            EXCHANGE_DATA_DIR=str(settings.data_dir),
            EXCHANGE_SECRET_KEY=settings.secret_key or "",
            EXCHANGE_MAX_PAGE_SIZE=str(settings.max_page_size),
            EXCHANGE_SCHEDULER_ENABLED="false",
            EXCHANGE_LOG_LEVEL="WARNING",
        )
        if settings.database_url:
            env["EXCHANGE_DATABASE_URL"] = settings.database_url
        self.log_path = log_path
        args = [EXE, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler"]
        if count > 1:
            args += ["--workers", str(count)]
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exchange serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    # The first worker answered; give the others time to finish importing.
                    time.sleep(3.0 if self.count > 1 else 0)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"exchange serve not ready after {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the supervisor ends its workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own child's group, by its id
                self.proc.wait(timeout=10)


class GrowingList:
    """A loopback HTTP server whose IoC list gains `step` new lines on every fetch (no ETag)."""

    def __init__(self, step: int, seed: int) -> None:
        self.lines: list[str] = []
        self.step = step
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = outer.next_body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/iocs.txt"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_body(self) -> bytes:
        with self.lock:
            for _ in range(self.step):
                n = len(self.lines)
                if n % 2:
                    self.lines.append(f"feed{n}-{self.rng.getrandbits(32):08x}.load-bench.example")
                else:
                    self.lines.append(f"{10 + n // 65536 % 200}.{n // 256 % 256}.{n % 256}.{1 + n % 250}")
            return ("# load benchmark feed\n" + "\n".join(self.lines) + "\n").encode()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Setup:
    settings: Settings
    engine: Any
    factory: Any
    admin: tuple[str, str]
    analyst_key: str
    partners: dict[str, tuple[Profile, str, str]]  # slug -> (profile, credential id, key)
    collection_ids: dict[str, str]  # alias -> TAXII id
    feed_name: str


def make_exchange(
    backend: str,
    workdir: Path,
    stack: ExitStack,
    *,
    n_partners: int,
    feed_url: str,
    pg_admin: str,
    database_url: str | None = None,
) -> Setup:
    if backend == "postgresql" and database_url is None:
        database_url = create_postgres_database(pg_admin, stack)
    settings = Settings(
        data_dir=workdir / "data",
        database_url=database_url,
        secret_key=secrets.token_urlsafe(40),
        max_page_size=1000,
        scheduler_enabled=False,
    )
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    stack.callback(engine.dispose)
    migrate(engine)
    factory = make_session_factory(engine)
    partners: dict[str, tuple[Profile, str, str]] = {}
    with session_scope(factory, write=True) as db:
        init = initialise(db, settings)
        assert init.admin_id and init.admin_key
        _, analyst_key = auth_service.create_credential(db, name="load analyst", role="analyst")
        for profile in profiles(n_partners):
            _, credential, key = partner_service.create(
                db, slug=profile.slug, name=f"Partner {profile.slug}", country="IN", actor=init.admin_id
            )
            agreement_service.apply(db, profile.document(), actor=init.admin_id, source="load benchmark")
            partners[profile.slug] = (profile, credential.id, key)
        feed_service.create(
            db,
            FeedCreate(
                name="load-feed",
                kind="text",
                url=feed_url,
                collection="indicators",
                tlp="green",
                confidence=60,
                timeout=60,
            ),
            actor=init.admin_id,
            check_options=lambda kind, options: options,
        )
        ids = {c.alias: c.id for c in db.scalars(select(Collection))}
    return Setup(
        settings,
        engine,
        factory,
        (init.admin_id, init.admin_key),
        analyst_key,
        partners,
        ids,
        "load-feed",
    )


# --- the feed process ---------------------------------------------------------------------


def feeder_main(args: argparse.Namespace) -> int:
    """Run the feed again and again until `--until` (a monotonic-clock-free wall time) passes."""
    from feeds.runner import run_feed

    settings = Settings(
        data_dir=Path(args.data_dir),
        database_url=args.database_url or None,
        secret_key=os.environ["BENCH_SECRET_KEY"],
        scheduler_enabled=False,
    )
    factory = make_session_factory(make_engine(settings.sqlalchemy_url))
    totals: Counter[str] = Counter()
    runs = failed = 0
    while time.time() < args.until:
        try:
            summary = run_feed(factory, settings, args.name, actor="load benchmark")
        except Exception as exc:  # counted and reported; the run goes on
            failed += 1
            print(f"feed run raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        else:
            runs += 1
            totals.update(summary.counts)
            if summary.status != "ok":
                failed += 1
                print(f"feed run: {summary.line()}", file=sys.stderr, flush=True)
        time.sleep(args.pause)
    print(json.dumps({"runs": runs, "failed": failed, "counts": dict(totals)}), flush=True)
    return 0


# --- the load -----------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    objects: int = 0
    requests: int = 0
    refused_at: list[float] = field(default_factory=list)  # monotonic times of answers not 2xx
    no_retry_after: int = 0  # 503s without Retry-After

    def answered(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] += 1
        self.requests += 1
        if response.status_code >= 300:
            self.refused_at.append(time.monotonic())
        if response.status_code == 503 and not response.headers.get("Retry-After"):
            self.no_retry_after += 1

    def fail(self, message: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(message)


def _version_of(obj: dict[str, Any]) -> str:
    return str(obj.get("modified") or obj.get("created") or "")


class PartnerPoller:
    """One partner: polls its collections with added_after; remembers every version it got."""

    def __init__(self, base: str, setup: Setup, slug: str, stats: Stats, page: int) -> None:
        self.profile, cred, key = setup.partners[slug]
        self.slug = slug
        self.auth = (cred, key)
        self.credential = cred
        self.base = base
        self.urls = {
            alias: f"{base}/taxii2/{setup.settings.api_root}/collections/{setup.collection_ids[alias]}/objects/"
            for alias in self.profile.collections
        }
        self.after: dict[str, str | None] = dict.fromkeys(self.urls)
        self.received: Counter[tuple[str, str, str]] = Counter()  # (alias, id, version)
        self.stats = stats
        self.page = page

    async def _get(
        self, client: httpx.AsyncClient, url: str, params: dict[str, str]
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await client.get(url, params=params)
        except httpx.HTTPError as exc:
            self.stats.statuses[0] += 1
            self.stats.refused_at.append(time.monotonic())
            self.stats.fail(f"{self.slug}: {type(exc).__name__}")
            return None
        self.stats.latencies.append(time.perf_counter() - started)
        self.stats.answered(response)
        if response.status_code != 200:
            self.stats.fail(f"{self.slug}: HTTP {response.status_code} {response.text[:160]}")
            return None
        return response

    async def poll(self, client: httpx.AsyncClient, alias: str) -> int:
        """One poll of one collection, following `next`; the number of objects received."""
        params = {"limit": str(self.page)}
        if self.after[alias]:
            params["added_after"] = str(self.after[alias])
        got = 0
        while True:
            response = await self._get(client, self.urls[alias], params)
            if response is None:
                return got  # resume from the last good point next time
            body = response.json()
            for obj in body.get("objects", []):
                self.received[(alias, obj["id"], _version_of(obj))] += 1
                got += 1
            self.stats.objects += len(body.get("objects", []))
            last = response.headers.get("X-TAXII-Date-Added-Last")
            if body.get("more"):
                params = {"limit": str(self.page), "next": body["next"]}
                continue
            if last:
                self.after[alias] = last
            return got

    async def run(self, stop: asyncio.Event, interval: float, rng: random.Random) -> None:
        async with httpx.AsyncClient(
            auth=self.auth, headers={"Accept": TAXII}, timeout=120, limits=httpx.Limits(max_connections=1)
        ) as client:
            await asyncio.sleep(rng.uniform(0, interval))
            while not stop.is_set():
                for alias in self.urls:
                    await self.poll(client, alias)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=rng.uniform(0.5 * interval, 1.5 * interval))

    async def drain(self) -> None:
        """Poll until every collection answers an empty page."""
        async with httpx.AsyncClient(auth=self.auth, headers={"Accept": TAXII}, timeout=120) as client:
            for alias in self.urls:
                for _ in range(50):
                    if await self.poll(client, alias) == 0:
                        break

    async def full_pull(self) -> set[tuple[str, str, str]]:
        """Every collection from the start: what the partner's stream holds now (latest versions)."""
        found: set[tuple[str, str, str]] = set()
        async with httpx.AsyncClient(auth=self.auth, headers={"Accept": TAXII}, timeout=120) as client:
            for alias, url in self.urls.items():
                params = {"limit": "1000"}
                while True:
                    started = time.perf_counter()
                    response = await client.get(url, params=params)
                    self.stats.latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        self.stats.fail(f"{self.slug}: full pull HTTP {response.status_code}")
                        break
                    body = response.json()
                    for obj in body.get("objects", []):
                        found.add((alias, obj["id"], _version_of(obj)))
                    if not body.get("more"):
                        break
                    params = {"limit": "1000", "next": body["next"]}
        return found


class Analyst:
    """Publishes incidents over REST (and now and then a new version of an earlier one)."""

    def __init__(self, base: str, key: str, slugs: list[str], stats: Stats, seed: int) -> None:
        self.base = base
        self.key = key
        self.slugs = slugs
        self.stats = stats
        self.rng = random.Random(seed)
        self.seed = seed
        self.published: list[dict[str, Any]] = []
        self.n = 0

    def _body(self) -> dict[str, Any]:
        rng, self.n = self.rng, self.n + 1
        observables = []
        for j in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                value = f"{self.seed}-{self.n}-{j}-{rng.getrandbits(24):06x}.analyst.example"
                observables.append({"type": "domain-name", "value": value})
            else:
                observables.append({"type": "file:hashes.'SHA-256'", "value": f"{rng.getrandbits(256):064x}"})
        audience = rng.sample(self.slugs, rng.randint(1, 4)) if rng.random() < 0.25 else []
        return {
            "title": f"Load incident {self.seed}-{self.n}",
            "description": "published by the load benchmark",
            "incident_types": ["phishing"],
            "severity": rng.choice(["low", "medium", "high"]),
            "tlp": rng.choices(LEVELS, weights=(2, 4, 3, 1, 1))[0],
            "confidence": rng.choice([None, 40, 60, 90]),
            "audience": audience,
            "collection": rng.choice(COLLECTIONS),
            "observables": observables,
        }

    async def run(self, stop: asyncio.Event, every: float) -> None:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self.key}"}, timeout=120) as client:
            while not stop.is_set():
                if self.published and self.rng.random() < 0.15:
                    body = dict(self.rng.choice(self.published))
                    body["description"] = f"updated {self.n}"
                else:
                    body = self._body()
                started = time.perf_counter()
                try:
                    response = await client.post(f"{self.base}/api/v1/incidents", json=body)
                except httpx.HTTPError as exc:
                    self.stats.statuses[0] += 1
                    self.stats.fail(f"publish: {type(exc).__name__}")
                else:
                    self.stats.latencies.append(time.perf_counter() - started)
                    self.stats.answered(response)
                    if response.status_code == 201:
                        if "id" not in body:
                            self.published.append(dict(body, id=response.json()["incident"]))
                    else:
                        self.stats.fail(f"publish: HTTP {response.status_code} {response.text[:160]}")
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=every)


# --- the checks ---------------------------------------------------------------------------


@dataclass
class Check:
    missed: int = 0
    repeated: int = 0
    unexpected: int = 0  # ids delivered that the final full pull does not hold at all
    ledger_mismatch: int = 0
    leaks: int = 0
    indicators_missed: int = 0
    indicators_extra: int = 0
    partners_wrong: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.missed
            or self.repeated
            or self.unexpected
            or self.ledger_mismatch
            or self.leaks
            or self.indicators_missed
            or self.indicators_extra
        )


def _latest(received: set[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    latest: dict[tuple[str, str], str] = {}
    for alias, stix_id, version in received:
        if version > latest.get((alias, stix_id), ""):
            latest[(alias, stix_id)] = version
    return latest


def check_partner(setup: Setup, poller: PartnerPoller, full: set[tuple[str, str, str]], check: Check) -> None:
    got = set(poller.received)
    missed = len(full - got)
    repeated = sum(n - 1 for n in poller.received.values() if n > 1)
    full_ids = {(a, i) for a, i, _ in full}
    unexpected = len({(a, i) for a, i, _ in got} - full_ids)
    profile = poller.profile
    with session_scope(setup.factory) as db:
        colls = {c.pk: c for c in db.scalars(select(Collection))}
        alias_of = {pk: c.alias for pk, c in colls.items()}
        ledger: Counter[tuple[str, str, str]] = Counter()
        for coll_pk, stix_id, version, n in db.execute(
            select(Delivery.collection_pk, ObjectVersion.stix_id, ObjectVersion.version_text, func.count())
            .select_from(Disclosure)
            .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
            .join(ObjectVersion, ObjectVersion.pk == Disclosure.object_version_pk)
            .where(Delivery.credential_id == poller.credential)
            .group_by(Delivery.collection_pk, ObjectVersion.stix_id, ObjectVersion.version_text)
        ):
            ledger[(alias_of[coll_pk], stix_id, version)] += n
        served = poller.received + Counter(full)  # the polls, then the full pull
        ledger_mismatch = sum(((ledger - served) + (served - ledger)).values())
        partner_pk = db.scalar(select(Partner.pk).where(Partner.slug == poller.slug))
        leaks = 0
        rows = db.execute(
            select(ObjectVersion)
            .join(Disclosure, Disclosure.object_version_pk == ObjectVersion.pk)
            .join(Delivery, Delivery.pk == Disclosure.delivery_pk)
            .where(Delivery.partner_pk == partner_pk)
        ).scalars()
        for row in rows:
            if not _allowed(row, colls[row.collection_pk], profile):
                leaks += 1
        expected_ind: set[tuple[str, str, str]] = set()
        for row in db.scalars(
            select(ObjectVersion).where(ObjectVersion.type == "indicator", ObjectVersion.is_latest.is_(True))
        ):
            if _allowed(row, colls[row.collection_pk], profile):
                expected_ind.add((alias_of[row.collection_pk], row.stix_id, row.version_text))
    latest = _latest(got)
    polled_ind = {(a, i, v) for (a, i), v in latest.items() if i.startswith("indicator--")}
    ind_missed, ind_extra = len(expected_ind - polled_ind), len(polled_ind - expected_ind)
    check.missed += missed
    check.repeated += repeated
    check.unexpected += unexpected
    check.ledger_mismatch += ledger_mismatch
    check.leaks += leaks
    check.indicators_missed += ind_missed
    check.indicators_extra += ind_extra
    if missed or repeated or unexpected or ledger_mismatch or leaks or ind_missed or ind_extra:
        check.partners_wrong.append(
            f"{poller.slug}: missed {missed}, repeated {repeated}, unexpected {unexpected}, "
            f"ledger {ledger_mismatch}, leaks {leaks}, indicators missed {ind_missed} extra {ind_extra}"
        )


def _allowed(row: ObjectVersion, coll: Collection, profile: Profile) -> bool:
    """The harness's own reading of a read grant on one stored row's columns."""
    rank = row.tlp_rank if row.tlp_rank is not None else RANK[coll.default_tlp]
    if coll.alias not in profile.collections or rank > RANK[profile.max_tlp]:
        return False
    if profile.types is not None and row.type not in profile.types:
        return False
    if profile.min_confidence is not None and (
        row.confidence is None or row.confidence < profile.min_confidence
    ):
        return False
    return row.audience is None or f",{profile.slug}," in row.audience


# --- one configuration --------------------------------------------------------------------


@dataclass
class Result:
    label: str
    seconds: float
    stats: Stats
    publish: Stats
    check: Check
    feed: dict[str, Any]
    stored: int
    load_at_start: str
    extra: dict[str, Any] = field(default_factory=dict)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    base: str,
    setup: Setup,
    *,
    seconds: float,
    interval: float,
    page: int,
    analysts: int,
    publish_every: float,
    seed: int,
    during: Callable[[float], None] | None = None,
) -> tuple[Stats, Stats, list[PartnerPoller]]:
    stats, publish = Stats(), Stats()
    stop = asyncio.Event()
    rng = random.Random(seed)
    pollers = [PartnerPoller(base, setup, slug, stats, page) for slug in setup.partners]
    slugs = list(setup.partners)
    writers = [Analyst(base, setup.analyst_key, slugs, publish, seed * 100 + i) for i in range(analysts)]
    tasks = [asyncio.create_task(p.run(stop, interval, random.Random(rng.random()))) for p in pollers]
    tasks += [asyncio.create_task(w.run(stop, publish_every)) for w in writers]
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if during is not None:
            await asyncio.get_running_loop().run_in_executor(None, during, elapsed)
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    return stats, publish, pollers


def run_config(
    backend: str,
    workers: int,
    opts: argparse.Namespace,
    workdir: Path,
    pg_admin: str,
    *,
    database_url: str | None = None,
    during: Callable[[float], None] | None = None,
) -> Result:
    label = (
        f"{'SQLite' if backend == 'sqlite' else 'PostgreSQL'}, {workers} worker{'s' if workers > 1 else ''}"
    )
    with ExitStack() as stack:
        feed_server = GrowingList(step=opts.feed_step, seed=opts.seed)
        stack.callback(feed_server.stop)
        log(f"{label}: creating the exchange, {opts.partners} partners and their agreements")
        setup = make_exchange(
            backend,
            workdir,
            stack,
            n_partners=opts.partners,
            feed_url=feed_server.url,
            pg_admin=pg_admin,
            database_url=database_url,
        )
        group = Workers(workers, setup.settings, workdir / "server.log")
        stack.callback(group.stop)
        group.wait_ready()
        load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
        until = time.time() + opts.seconds
        feeder = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.load",
                "feeder",
                "--data-dir",
                str(setup.settings.data_dir),
                "--database-url",
                setup.settings.database_url or "",
                "--name",
                setup.feed_name,
                "--until",
                str(until),
                "--pause",
                str(opts.feed_pause),
            ],
            cwd=ROOT,
            env=dict(os.environ, BENCH_SECRET_KEY=setup.settings.secret_key or ""),
            stdout=subprocess.PIPE,
            stderr=open(workdir / "feeder.log", "ab"),  # noqa: SIM115 - closed with the process
            text=True,
        )
        stack.callback(lambda: feeder.poll() is None and feeder.kill())
        log(f"{label}: load for {opts.seconds:.0f} s (load average {load_at_start})")
        stats, publish, pollers = asyncio.run(
            drive(
                group.url,
                setup,
                seconds=opts.seconds,
                interval=opts.interval,
                page=opts.page,
                analysts=opts.analysts,
                publish_every=opts.publish_every,
                seed=opts.seed,
                during=during,
            )
        )
        out, _ = feeder.communicate(timeout=300)
        feed = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"runs": 0, "failed": 1}
        if feed.get("failed"):
            feed["log"] = (workdir / "feeder.log").read_text(errors="replace").strip().splitlines()[-3:]
        log(f"{label}: draining every partner's stream, then a full pull each")
        poll_requests, poll_objects = stats.requests, stats.objects
        poll_latencies, poll_statuses = list(stats.latencies), Counter(stats.statuses)

        async def finish() -> list[set[tuple[str, str, str]]]:
            await asyncio.gather(*(p.drain() for p in pollers))
            return list(await asyncio.gather(*(p.full_pull() for p in pollers)))

        fulls = asyncio.run(finish())
        if not group.alive():
            stats.fail("a worker died")
        check = Check()
        for poller, full in zip(pollers, fulls, strict=True):
            check_partner(setup, poller, full, check)
        with session_scope(setup.factory) as db:
            stored = db.scalar(select(func.count()).select_from(ObjectVersion)) or 0
        polled = Stats(
            poll_latencies,
            poll_statuses,
            stats.errors,
            poll_objects,
            poll_requests,
            list(stats.refused_at),
            stats.no_retry_after,
        )
        return Result(label, opts.seconds, polled, publish, check, feed, stored, load_at_start)


def render(results: list[Result]) -> str:
    rows: list[tuple[str, ...]] = [("measure", *(r.label for r in results))]

    def add(name: str, fn: Callable[[Result], str]) -> None:
        rows.append((name, *(fn(r) for r in results)))

    add("partners polling / seconds", lambda r: f"{r.extra.get('partners', 0)} / {r.seconds:.0f}")
    add("poll requests (answered 200)", lambda r: f"{r.stats.requests:,} ({r.stats.statuses.get(200, 0):,})")
    add(
        "poll errors (not 200 / transport)",
        lambda r: str(sum(n for s, n in r.stats.statuses.items() if s != 200)),
    )
    add(
        "poll latency p50 / p99",
        lambda r: (
            f"{_pct(r.stats.latencies, 0.5) * 1000:.0f} / {_pct(r.stats.latencies, 0.99) * 1000:.0f} ms"
        ),
    )
    add("requests/s (polls)", lambda r: f"{r.stats.requests / r.seconds:,.0f}")
    add(
        "objects delivered, objects/s", lambda r: f"{r.stats.objects:,}, {r.stats.objects / r.seconds:,.0f}/s"
    )
    add(
        "publishes 201 / errors",
        lambda r: (
            f"{r.publish.statuses.get(201, 0):,} / {sum(n for s, n in r.publish.statuses.items() if s != 201)}"
        ),
    )
    add(
        "publish latency p50 / p99",
        lambda r: (
            f"{_pct(r.publish.latencies, 0.5) * 1000:.0f} / {_pct(r.publish.latencies, 0.99) * 1000:.0f} ms"
        ),
    )
    add(
        "feed runs (failed), new indicators",
        lambda r: (
            f"{r.feed.get('runs', 0)} ({r.feed.get('failed', 0)}), {r.feed.get('counts', {}).get('new', 0):,}"
        ),
    )
    add("object versions stored at the end", lambda r: f"{r.stored:,}")
    add(
        "missed / repeated / unexpected",
        lambda r: f"{r.check.missed} / {r.check.repeated} / {r.check.unexpected}",
    )
    add("ledger mismatches / agreement leaks", lambda r: f"{r.check.ledger_mismatch} / {r.check.leaks}")
    add(
        "indicators vs rows: missed / extra",
        lambda r: f"{r.check.indicators_missed} / {r.check.indicators_extra}",
    )
    add(
        "verdict",
        lambda r: (
            "OK"
            if r.check.ok and not r.stats.errors and not r.publish.errors and not r.feed.get("failed")
            else "WRONG"
        ),
    )
    add("load average at start", lambda r: r.load_at_start)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["feeder"]:
        p = argparse.ArgumentParser()
        p.add_argument("feeder")
        p.add_argument("--data-dir", required=True)
        p.add_argument("--database-url", default="")
        p.add_argument("--name", required=True)
        p.add_argument("--until", type=float, required=True)
        p.add_argument("--pause", type=float, default=1.0)
        return feeder_main(p.parse_args(argv))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both (default)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between a partner's polls (jittered)"
    )
    parser.add_argument("--page", type=int, default=100, help="limit per poll request")
    parser.add_argument("--analysts", type=int, default=2)
    parser.add_argument(
        "--publish-every", type=float, default=0.5, help="seconds between one analyst's publishes"
    )
    parser.add_argument("--feed-step", type=int, default=20, help="new lines in the feed per fetch")
    parser.add_argument("--feed-pause", type=float, default=1.0, help="seconds between feed runs")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args(argv)
    backends = [
        {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}[b]
        for b in opts.db.split(",")
    ]
    counts = [int(w) for w in opts.workers.split(",")]
    facts = machine_facts(["-m", "benchmarks.load", *argv], "")
    facts["server"] = facts["server"].replace("1 process", "`exchange serve --workers N`")
    if "postgresql" in backends:
        problem = postgres_problem(opts.pg_url)
        if problem:
            print(f"PostgreSQL skipped: {problem}", file=sys.stderr)
            backends.remove("postgresql")
        else:
            facts["postgresql"] = postgres_version(opts.pg_url)
    workdir = Path(tempfile.mkdtemp(prefix="exchange-load-"))
    results: list[Result] = []
    try:
        for backend in backends:
            for n in counts:
                result = run_config(backend, n, opts, workdir / f"{backend}-{n}", opts.pg_url)
                result.extra["partners"] = opts.partners
                results.append(result)
                log(f"{result.label}: done")
                for line in result.check.partners_wrong[:10]:
                    log(f"  WRONG {line}")
                for line in (result.stats.errors + result.publish.errors)[:10]:
                    log(f"  error {line}")
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for key in ("command", "cpu", "python", "sqlite", "postgresql", "server"):
        print(f"{key:10} {facts.get(key, '')}")
    print(render(results))
    if opts.json:
        Path(opts.json).write_text(
            json.dumps(
                [
                    {
                        "label": r.label,
                        "requests": r.stats.requests,
                        "p50_ms": _pct(r.stats.latencies, 0.5) * 1000,
                        "p99_ms": _pct(r.stats.latencies, 0.99) * 1000,
                        "objects": r.stats.objects,
                        "check": r.check.__dict__,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    wrong = any(not r.check.ok or r.stats.errors or r.publish.errors or r.feed.get("failed") for r in results)
    return 1 if wrong or len(results) < len(backends) * len(counts) else 0


if __name__ == "__main__":
    sys.exit(main())
