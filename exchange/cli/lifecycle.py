"""`exchange init|demo|serve|scheduler`: the commands that create or migrate the store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from exchange import heap
from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, urls

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from exchange import bootstrap

    with store.migrated_session(settings, create=True) as db:
        result = bootstrap.initialise(db, settings)
    if args.json:
        print(json.dumps({"id": result.admin_id, "key": result.admin_key}))
    elif result.admin_key:
        print("Initialised the exchange in", settings.data_dir.resolve())
        print(
            f"First administrator credential (shown only now, keep it safe):\n"
            f"  id:  {result.admin_id}\n  key: {result.admin_key}"
        )
    else:
        print(
            f"Already initialised; administrator credential {result.admin_id} exists "
            "(its key was shown when it was created)."
        )
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from exchange.httpserver import HTTP_PROTOCOL

    host, port = args.host or settings.host, args.port or settings.port
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        print("exchange: --workers must be at least 1", file=sys.stderr)
        return 2
    store.migrated_engine(settings, create=True).dispose()  # schema up to date before the first request
    if workers > 1:
        return _serve_workers(settings, host, port, workers, scheduler=not args.no_scheduler)

    from exchange.context import context_of
    from exchange.main import create_app
    from feeds.launcher import Launcher

    app = create_app(settings, feeds=Launcher)
    heap.settle()
    for name, url in urls(settings, host, port).items():
        print(f"{name:16} {url}")
    scheduler = None
    if settings.scheduler_enabled and not args.no_scheduler:
        from feeds.scheduler import SchedulerService

        # Every `serve` process offers to schedule; a database lease lets exactly one lead.
        scheduler = SchedulerService(settings, context_of(app).sessions, context_of(app).keyring)
        scheduler.start()
        print(
            f"{'scheduler':16} in this process (one process leads; EXCHANGE_SCHEDULER_ENABLED=false to leave it "
            "to `exchange scheduler`)"
        )
    sys.stdout.flush()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            http=HTTP_PROTOCOL,
            # uvicorn would believe X-Forwarded-For from 127.0.0.1; the app decides whom to
            # believe (EXCHANGE_TRUSTED_PROXIES, exchange/limits/client.py).
            proxy_headers=False,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    finally:
        if scheduler is not None:
            scheduler.stop()
    return 0


def _serve_workers(settings: Settings, host: str, port: int, workers: int, *, scheduler: bool) -> int:
    """uvicorn's supervisor with `workers` API processes; the scheduler, if any, in the supervisor.

    Workers are spawned (not forked) and read their settings from the environment, so what the
    command line chose is put there first. Everything a worker keeps is per process and safe to
    lose: the verified-key cache is checked against the credential row on every request, and
    `next` cursors are signed with the one shared secret, so any worker answers any page.
    """
    import os

    import uvicorn

    from exchange.httpserver import HTTP_PROTOCOL
    from exchange.signing import KeyRing, default_directory

    os.environ["EXCHANGE_DATA_DIR"] = str(settings.data_dir.resolve())
    # Each worker enforces its share of the rate limits (exchange.limits), so it must know how many there are.
    os.environ["EXCHANGE_WORKERS"] = str(workers)
    # Made once here, so the workers never race to create the secret or the signing keys.
    settings.ensure_secret()
    KeyRing(default_directory(settings)).ensure()
    for name, url in urls(settings, host, port).items():
        print(f"{name:16} {url}")
    print(f"{'workers':16} {workers} API processes")
    service = engine = None
    if settings.scheduler_enabled and scheduler:
        from exchange.audit import anchor as audit_anchor
        from exchange.database.core import make_engine, make_session_factory
        from feeds.scheduler import SchedulerService

        engine = make_engine(settings.sqlalchemy_url, busy_seconds=settings.database_busy_seconds)
        keyring = KeyRing(default_directory(settings))
        audit_anchor.attach(engine, keyring)
        service = SchedulerService(settings, make_session_factory(engine), keyring)
        service.start()
        print(f"{'scheduler':16} in the supervisor process (one process leads)")
    sys.stdout.flush()
    try:
        uvicorn.run(
            "exchange.cli.lifecycle:worker_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            http=HTTP_PROTOCOL,
            log_level=settings.log_level.lower(),
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is read only from trusted proxies (exchange.limits.client)
        )
    finally:
        if service is not None:
            service.stop()
        if engine is not None:
            engine.dispose()
    return 0


def worker_app() -> Any:
    """The app of one `exchange serve --workers N` process (uvicorn's factory)."""
    from exchange.config import Settings
    from exchange.main import create_app
    from feeds.launcher import Launcher

    app = create_app(Settings(), feeds=Launcher)
    heap.settle()
    return app


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.scheduler import run_forever

    # It migrates an existing store (a new release's schedulers may start first), never makes one.
    store.migrated_engine(settings, create=False).dispose()
    return run_forever(settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from exchange import bootstrap, demo
    from exchange.auth import service as auth_service

    with store.migrated_session(settings, create=True) as db:
        result = bootstrap.initialise(db, settings)
        loaded = demo.load(db, result.api_root)
        analyst, analyst_key = auth_service.create_credential(db, name="demo analyst", role="analyst")
        partner_id, partner_key, _ = demo.load_partner(db)
        from exchange.audit import service as audit

        audit.record(
            db,
            actor=CLI_ACTOR,
            action="demo.load",
            target=result.api_root.name,
            details={"new": {alias: r.created for alias, r in loaded.items()}, "analyst": analyst.id},
        )
    data: dict[str, Any] = {
        "urls": urls(settings),
        "admin": {"id": result.admin_id, "key": result.admin_key},
        "analyst": {"id": analyst.id, "key": analyst_key},
        "partner": {"slug": demo.DEMO_PARTNER, "id": partner_id, "key": partner_key},
        "loaded": {alias: r.created for alias, r in loaded.items()},
    }
    if args.json:
        print(json.dumps(data))
        return 0
    print("Demo data loaded:", ", ".join(f"{n} new objects in {a}" for a, n in data["loaded"].items()))
    if result.admin_key:
        print(f"Administrator (shown once):  id {result.admin_id}  key {result.admin_key}")
    print(f"Demo analyst (shown once):   id {analyst.id}  key {analyst_key}")
    print(f"Partner {demo.DEMO_PARTNER} (shown once): id {partner_id}  key {partner_key}")
    for name, url in data["urls"].items():
        print(f"{name:16} {url}")
    print("Start the server with: exchange serve")
    print(
        f"Then try: curl -u {analyst.id}:{analyst_key} -H 'Accept: application/taxii+json;version=2.1' "
        f"{data['urls']['api_root']}collections/"
    )
    return 0


def register_init(sub: Any) -> None:
    p = command(sub, "init", cmd_init, "create the schema, default API root and collections, first admin key")
    p.add_argument("--json", action="store_true")


def register(sub: Any) -> None:
    command(sub, "scheduler", cmd_scheduler, "run feeds, push delivery and housekeeping (one process leads)")
    p = command(
        sub, "serve", cmd_serve, "serve TAXII, the REST API and pages (and the scheduler, unless told not to)"
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--no-scheduler", action="store_true", help="leave feeds and pushes to `exchange scheduler`"
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="API processes (default EXCHANGE_WORKERS, 1); any worker answers any request",
    )
    p = command(sub, "demo", cmd_demo, "initialise and load a small sample data set; prints credentials")
    p.add_argument("--json", action="store_true")
