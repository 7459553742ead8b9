"""Where a partner's pull spends its time: section 6's data, pulled in-process, with a profile.

    .venv/bin/python -m benchmarks.profile_partner --backend sqlite [--objects 20000] [--profile]

Builds a throw-away exchange (SQLite file or a new PostgreSQL database), bulk-loads section 6's
half-withheld collection and its all-visible twin, makes the partner and its agreement, then
pulls the all-visible collection through the TAXII Flask app (no HTTP server, no client
parsing: only what the exchange does per page) as the partner and as the administrator, in
alternating rounds, and prints both times and their ratio. `--profile` runs one more partner
pull (or, with `--profile-as admin`, administrator's pull) under pyinstrument (pip install pyinstrument; not a dependency of the exchange) and prints
its top lines.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import statistics
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, select

from benchmarks import data, partner
from benchmarks.instance import create_postgres_database
from exchange.agreement import service as agreement_service
from exchange.auth.keys import VerifiedKeyCache
from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.disclosure import service as disclosure
from exchange.intel import service
from exchange.intel.models import ObjectVersion
from exchange.partner import service as partner_service
from exchange.signing import KeyRing, default_directory
from taxii_server import create_taxii_app

TAXII_MEDIA = "application/taxii+json;version=2.1"
WALL: list[float] = []  # wall-clock seconds of each full pull, in order


def _basic(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def pull(
    client: Any, url: str, auth: tuple[str, str], *, page: int, expected: int, first_only: bool = False
) -> float:
    """CPU seconds of a full `next`-paged pull (server and client share this process; CPU time
    stays comparable when other work on the machine stretches the wall clock); checks the count."""
    headers = {"Accept": TAXII_MEDIA, "Authorization": _basic(auth)}
    cpu, wall, seen, token = time.process_time(), time.perf_counter(), 0, None
    while True:
        query = f"?limit={page}" + (f"&next={token}" if token else "")
        answer = client.get(url + query, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}: {answer.data[:300]!r}")
        envelope = orjson.loads(answer.data)
        seen += len(envelope.get("objects", []))
        if first_only:
            return time.process_time() - cpu
        if not envelope.get("more"):
            break
        token = envelope["next"]
    seconds = time.process_time() - cpu
    WALL.append(time.perf_counter() - wall)
    if seen != expected:
        raise AssertionError(f"pulled {seen:,} objects, expected {expected:,}")
    return seconds


def explain_page(engine: Any, client: Any, url: str, auth: tuple[str, str], *, page: int) -> None:
    """Print every statement one partner page sends, with its plan (and timing on PostgreSQL)."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, many):  # type: ignore[no-untyped-def]
        if not many:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        pull(client, url + "", auth, page=page, expected=-1, first_only=True)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    sqlite = engine.dialect.name == "sqlite"
    explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    for statement, parameters in captured:
        if not statement.lstrip().upper().startswith("SELECT"):
            print(f"-- {' '.join(statement.split())[:200]}")
            continue
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(explain + statement, parameters).all()
        text = " ".join(statement.split())
        print(f"-- {text[:300]}{' ...' if len(text) > 300 else ''}")
        print("   " + "\n   ".join(str(r[-1]) for r in rows))


def ledger_alone(env: Setup, *, page: int) -> None:
    """Median wall time of one page's ledger rows written on their own: a write session,
    `record_versions` for `page` versions (the delivery row, then its rows), the commit (10 runs)."""
    with session_scope(env.factory) as db:
        pks = list(
            db.scalars(
                select(ObjectVersion.pk).where(ObjectVersion.collection_pk == env.collection_pk).limit(page)
            )
        )
    runs = []
    for _ in range(10):
        started = time.perf_counter()
        with session_scope(env.factory, write=True) as db:
            disclosure.record_versions(
                db,
                partner_pk=env.partner_pk,
                credential_id="ledger-timing",
                requested_by="ledger-timing",
                object_version_pks=pks,
                collection_pk=env.collection_pk,
                channel="taxii",
            )
        runs.append(time.perf_counter() - started)
    print(
        f"ledger write of {len(pks):,} versions alone: median {statistics.median(runs) * 1000:.1f} ms, "
        f"min {min(runs) * 1000:.1f} ms (10 runs)"
    )


@dataclass
class Setup:
    """A throw-away exchange holding section 6's two collections, its partner and agreement."""

    engine: Any
    factory: Any
    client: Any
    objects_url: str
    partner_auth: tuple[str, str]
    admin_auth: tuple[str, str]
    visible_objects: int
    partner_pk: int
    collection_pk: int


def setup(stack: ExitStack, *, backend: str, objects: int, pg_url: str) -> Setup:
    """Build the exchange; everything is removed when `stack` closes."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="exchange-profile-")))
    url = create_postgres_database(pg_url, stack) if backend == "postgresql" else None
    settings = Settings(
        data_dir=workdir / "data", database_url=url, secret_key=secrets.token_urlsafe(40), max_page_size=1000
    )
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    stack.callback(engine.dispose)
    factory = make_session_factory(engine)
    migrate(engine)
    with session_scope(factory, write=True) as db:
        init = initialise(db, settings)
    admin = (init.admin_id or "", init.admin_key or "")

    def collection(alias: str) -> Any:
        with session_scope(factory, write=True) as db:
            root = service.get_api_root(db, settings.api_root)
            assert root is not None
            return service.create_collection(db, api_root=root, alias=alias, title=alias)

    n, half = objects, objects // 2
    mix = partner.mixed_collection(n, 2032)
    mixed, visible = collection("partner-mixed"), collection("partner-visible")
    loader = data.BulkLoader(engine, added_by=admin[0], rank_of=partner.rank_of)
    loader.load(mixed.pk, iter(mix.objects), n)
    loader.load(visible.pk, iter(mix.visible), half)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    with session_scope(factory, write=True) as db:
        _, credential, key = partner_service.create(
            db, slug=partner.PARTNER_SLUG, name="Profiled partner", country="IN", actor=admin[0]
        )
        agreement_service.apply(
            db, partner.agreement([mixed.alias, visible.alias]), actor=admin[0], source="profile"
        )
    keyring = KeyRing(default_directory(settings))
    keyring.ensure()
    app = create_taxii_app(settings, factory, VerifiedKeyCache(settings.key_cache_seconds), keyring)
    return Setup(
        engine=engine,
        factory=factory,
        client=app.test_client(),
        objects_url=f"/{settings.api_root}/collections/{visible.id}/objects/",
        partner_auth=(credential.id, key),
        admin_auth=admin,
        visible_objects=half,
        partner_pk=credential.partner_pk,
        collection_pk=visible.pk,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--objects", type=int, default=20_000, help="mixed collection size (x100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="profile one more partner pull")
    parser.add_argument(
        "--profile-as", choices=("partner", "admin"), default="partner", help="whose pull --profile profiles"
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN every statement of one partner page")
    parser.add_argument(
        "--ledger",
        action="store_true",
        help="also time one page's ledger write alone (1,000 versions, 10 runs)",
    )
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    opts = parser.parse_args(argv)

    with ExitStack() as stack:
        env = setup(stack, backend=opts.backend, objects=opts.objects, pg_url=opts.pg_url)
        client, objects_url, half = env.client, env.objects_url, env.visible_objects
        partner_auth, admin, engine = env.partner_auth, env.admin_auth, env.engine
        times: dict[str, list[float]] = {"partner": [], "admin": []}
        walls: dict[str, list[float]] = {"partner": [], "admin": []}
        for round_ in range(opts.rounds):
            order = [("partner", partner_auth), ("admin", admin)]
            for name, auth in order if round_ % 2 == 0 else reversed(order):
                times[name].append(pull(client, objects_url, auth, page=opts.page, expected=half))
                walls[name].append(WALL[-1])
        p, a = statistics.median(times["partner"]), statistics.median(times["admin"])
        print(
            f"{opts.backend}: {half:,} objects, pages of {opts.page}, CPU seconds: partner {p:.3f} s "
            f"({half / p:,.0f}/s), admin {a:.3f} s ({half / a:,.0f}/s), partner/admin {p / a:.2f}x; "
            f"rounds partner {', '.join(f'{t:.2f}' for t in times['partner'])}, "
            f"admin {', '.join(f'{t:.2f}' for t in times['admin'])}; wall-clock medians partner "
            f"{statistics.median(walls['partner']):.3f} s, admin {statistics.median(walls['admin']):.3f} s"
        )
        if opts.explain:
            explain_page(engine, client, objects_url, partner_auth, page=opts.page)
        if opts.ledger:
            ledger_alone(env, page=opts.page)
        if opts.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
            who = partner_auth if opts.profile_as == "partner" else admin
            pull(client, objects_url, who, page=opts.page, expected=half)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
