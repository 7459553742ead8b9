"""The `exchange` command."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from exchange import bootstrap
from exchange.auth import service as auth_service
from exchange.config import Settings, get_settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.errors import ExchangeError
from exchange.intel import service


@contextmanager
def _session(settings: Settings, *, migrate: bool = True) -> Iterator[Session]:
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if migrate:
            bootstrap.migrate(engine)
        with session_scope(make_session_factory(engine), write=True) as db:
            yield db
    finally:
        engine.dispose()


def _emit(args: argparse.Namespace, data: dict, text: str) -> None:
    print(json.dumps(data) if getattr(args, "json", False) else text)


def _urls(settings: Settings, host: str | None = None, port: int | None = None) -> dict[str, str]:
    base = (settings.public_url or f"http://{host or settings.host}:{port or settings.port}").rstrip("/")
    return {
        "taxii_discovery": f"{base}/taxii2/",
        "api_root": f"{base}/taxii2/{settings.api_root}/",
        "openapi": f"{base}/api/v1/docs",
        "health": f"{base}/healthz",
    }


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        result = bootstrap.initialise(db, settings)
    if args.json:
        print(json.dumps({"id": result.admin_id, "key": result.admin_key}))
    elif result.admin_key:
        print("Initialised the exchange in", settings.data_dir.resolve())
        print(f"First administrator credential (shown only now, keep it safe):\n"
              f"  id:  {result.admin_id}\n  key: {result.admin_key}")
    else:
        print(f"Already initialised; administrator credential {result.admin_id} exists "
              "(its key was shown when it was created).")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from exchange.main import create_app

    host, port = args.host or settings.host, args.port or settings.port
    with _session(settings):
        pass  # schema up to date before the first request
    app = create_app(settings)
    for name, url in _urls(settings, host, port).items():
        print(f"{name:16} {url}")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), access_log=False)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from exchange import demo

    with _session(settings) as db:
        result = bootstrap.initialise(db, settings)
        loaded = demo.load(db, result.api_root)
        analyst, analyst_key = auth_service.create_credential(db, name="demo analyst", role="analyst")
    data = {
        "urls": _urls(settings),
        "admin": {"id": result.admin_id, "key": result.admin_key},
        "analyst": {"id": analyst.id, "key": analyst_key},
        "loaded": {alias: r.created for alias, r in loaded.items()},
    }
    if args.json:
        print(json.dumps(data))
        return 0
    print("Demo data loaded:", ", ".join(f"{n} new objects in {a}" for a, n in data["loaded"].items()))
    if result.admin_key:
        print(f"Administrator (shown once):  id {result.admin_id}  key {result.admin_key}")
    print(f"Demo analyst (shown once):   id {analyst.id}  key {analyst_key}")
    for name, url in data["urls"].items():
        print(f"{name:16} {url}")
    print("Start the server with: exchange serve")
    print(f"Then try: curl -u {analyst.id}:{analyst_key} -H 'Accept: application/taxii+json;version=2.1' "
          f"{data['urls']['api_root']}collections/")
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        credential, key = auth_service.create_credential(db, name=args.name, role=args.role)
    _emit(args, {"id": credential.id, "key": key},
          f"{args.role} {args.name}: id {credential.id}  key {key}  (the key is shown only now)")
    return 0


def cmd_collection_add(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        root = bootstrap.initialise(db, settings).api_root
        coll = service.create_collection(
            db, api_root=root, alias=args.alias, title=args.title or args.alias,
            description=args.description, default_tlp=args.default_tlp,
        )
    _emit(args, {"id": coll.id, "alias": coll.alias, "title": coll.title},
          f"collection {coll.alias}: {coll.id}")
    return 0


def cmd_collection_list(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        root = service.get_api_root(db, settings.api_root)
        rows = service.list_collections(db, api_root_pk=root.pk) if root else []
        data = [{"id": c.id, "alias": c.alias, "title": c.title, "default_tlp": c.default_tlp} for c in rows]
    if args.json:
        print(json.dumps(data))
    else:
        for c in data:
            print(f"{c['alias']:24} {c['id']}  {c['title']} (unmarked = {c['default_tlp']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchange", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable, help_: str, parent=sub) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create the schema, default API root and collections, first admin key")
    p.add_argument("--json", action="store_true")
    p = add("serve", cmd_serve, "serve TAXII, the REST API and pages")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p = add("demo", cmd_demo, "initialise and load a small sample data set; prints credentials")
    p.add_argument("--json", action="store_true")

    user = sub.add_parser("user", help="internal users").add_subparsers(dest="action", required=True)
    p = add("add", cmd_user_add, "add an internal user and print its key once", user)
    p.add_argument("name")
    p.add_argument("--role", choices=auth_service.INTERNAL_ROLES, required=True)
    p.add_argument("--json", action="store_true")

    coll = sub.add_parser("collection", help="TAXII collections").add_subparsers(dest="action", required=True)
    p = add("add", cmd_collection_add, "add a collection", coll)
    p.add_argument("alias")
    p.add_argument("--title")
    p.add_argument("--description", default="")
    p.add_argument("--default-tlp", default="amber", help="level of unmarked objects (default amber)")
    p.add_argument("--json", action="store_true")
    p = add("list", cmd_collection_list, "list collections", coll)
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:
        print(f"exchange: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings) or 0)
    except ExchangeError as exc:
        print(f"exchange: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
