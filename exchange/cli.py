"""The `exchange` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections.abc import Callable

from exchange import bootstrap
from exchange.agreement import service as agreement_service
from exchange.auth import service as auth_service
from exchange.config import Settings, get_settings
from exchange.errors import BadRequestError, ExchangeError
from exchange.intel import service
from exchange.partner import service as partner_service
from policies.schemas import AgreementError


def _session(settings: Settings, *, migrate: bool = True):  # type: ignore[no-untyped-def]
    return bootstrap.command_session(settings, migrate_first=migrate)


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

    from exchange.main import create_app

    host, port = args.host or settings.host, args.port or settings.port
    with _session(settings):
        pass  # schema up to date before the first request
    app = create_app(settings)
    for name, url in _urls(settings, host, port).items():
        print(f"{name:16} {url}")
    scheduler = None
    if settings.scheduler_enabled and not args.no_scheduler:
        from feeds.scheduler import SchedulerService

        # Every `serve` process offers to schedule; a database lease lets exactly one lead.
        scheduler = SchedulerService(settings, app.state.session_factory, app.state.keyring)
        scheduler.start()
        print(
            f"{'scheduler':16} in this process (one process leads; EXCHANGE_SCHEDULER_ENABLED=false to leave it "
            "to `exchange scheduler`)"
        )
    sys.stdout.flush()
    try:
        from exchange.httpserver import HTTP_PROTOCOL

        uvicorn.run(
            app,
            host=host,
            port=port,
            http=HTTP_PROTOCOL,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    finally:
        if scheduler is not None:
            scheduler.stop()
    return 0


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from feeds.scheduler import run_forever

    with _session(settings):
        pass  # schema up to date before the first job
    return run_forever(settings)


def cmd_feed_run(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from exchange.database.core import make_engine, make_session_factory
    from feeds.runner import RunSummary, run_feed

    tty = sys.stderr.isatty()
    shown = [0.0]

    def progress(summary: RunSummary) -> None:
        now = time.monotonic()
        if not tty and now - shown[0] < 2.0:
            return
        shown[0] = now
        c = summary.counts
        rate = (c["new"] + c["updated"] + c["unchanged"]) / summary.seconds if summary.seconds else 0.0
        line = (
            f"{summary.feed}: fetched {c['fetched']:,}  new {c['new']:,}  updated {c['updated']:,}  "
            f"unchanged {c['unchanged']:,}  dropped {c['dropped']:,}  failed {c['failed']:,}  {rate:,.0f}/s"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    with _session(settings):
        pass  # schema up to date
    engine = make_engine(settings.sqlalchemy_url)
    try:
        summary = run_feed(
            make_session_factory(engine), settings, args.name, trigger="manual", progress=progress
        )
    finally:
        engine.dispose()
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "feed": summary.feed,
                    "run": summary.run_id,
                    "status": summary.status,
                    "error": summary.error,
                    "seconds": round(summary.seconds, 3),
                    **summary.counts,
                }
            )
        )
    else:
        print(summary.line())
    return 1 if summary.status == "failed" else 0


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
    print(
        f"Then try: curl -u {analyst.id}:{analyst_key} -H 'Accept: application/taxii+json;version=2.1' "
        f"{data['urls']['api_root']}collections/"
    )
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit

    with _session(settings) as db:
        credential, key = auth_service.create_credential(db, name=args.name, role=args.role)
        audit.record(
            db,
            actor=CLI_ACTOR,
            action="user.create",
            target=credential.id,
            details={"name": args.name, "role": args.role},
        )
    _emit(
        args,
        {"id": credential.id, "key": key},
        f"{args.role} {args.name}: id {credential.id}  key {key}  (the key is shown only now)",
    )
    return 0


def cmd_collection_add(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        root = bootstrap.initialise(db, settings).api_root
        coll = service.create_collection(
            db,
            api_root=root,
            alias=args.alias,
            title=args.title or args.alias,
            description=args.description,
            default_tlp=args.default_tlp,
        )
    _emit(
        args, {"id": coll.id, "alias": coll.alias, "title": coll.title}, f"collection {coll.alias}: {coll.id}"
    )
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


CLI_ACTOR = "cli"


def cmd_partner_add(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        partner, credential, key = partner_service.create(
            db,
            slug=args.slug,
            name=args.name,
            country=args.country,
            contact=args.contact,
            identity_id=args.identity,
            actor=CLI_ACTOR,
        )
    _emit(
        args,
        {"partner": partner.slug, "credential_id": credential.id, "key": key},
        f"partner {partner.slug} added; first credential id {credential.id}  key {key}  "
        "(the key is shown only now)",
    )
    return 0


def cmd_partner_list(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        data = [
            {"slug": p.slug, "name": p.name, "country": p.country, "status": p.status, "contact": p.contact}
            for p in partner_service.list_(db)
        ]
    if args.json:
        print(json.dumps(data))
    for p in [] if args.json else data:
        print(f"{p['slug']:20} {p['country']}  {p['status']:9}  {p['name']}")
    return 0


def cmd_partner_status(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        partner = partner_service.set_status(db, args.slug, args.status, actor=CLI_ACTOR)
    print(f"partner {partner.slug} is {partner.status}")
    return 0


def cmd_partner_push_auth(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed.cli import auth_from_args

    auth = None if args.clear else auth_from_args(args)
    if auth is None and not args.clear:
        raise BadRequestError("give --username with --password-env, or --header-env, or --clear")
    with _session(settings) as db:
        partner_service.set_push_auth(
            db, args.slug, None if auth is None else auth.model_dump(exclude_none=True), actor=CLI_ACTOR
        )
    print(f"push credentials for {args.slug} {'cleared' if auth is None else 'set'}")
    return 0


def cmd_push_run(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.database.core import make_engine, make_session_factory
    from exchange.signing.cli import keyring_for
    from feeds.push import push_partner, push_targets

    with _session(settings) as db:
        partner_service.get_by_slug(db, args.slug)
        if args.slug not in {t.slug for t in push_targets(db)}:
            raise BadRequestError(
                f"partner {args.slug!r} has no push delivery in force (an active agreement "
                "with a push section, inside its validity window)"
            )
    engine = make_engine(settings.sqlalchemy_url)
    try:
        summary = push_partner(make_session_factory(engine), settings, keyring_for(settings), args.slug)
    finally:
        engine.dispose()
    print(summary.line())
    return 1 if summary.status == "failed" else 0


def cmd_push_status(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed.service import push_status

    with _session(settings) as db:
        rows = push_status(db, args.slug)
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"nothing pushed to {args.slug} yet")
    for r in rows:
        print(
            f"{r['collection']:24} delivered {r['delivered_total']:,} up to {r['delivered_us'] or '-'}  "
            f"last success {r['last_success_at'] or 'never'}  failures in a row {r['consecutive_failures']}"
            + (f"  last error: {r['last_error']}" if r["last_error"] else "")
        )
    return 0


def cmd_credential_create(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime, timedelta, timezone

    expires = datetime.now(timezone.utc) + timedelta(days=args.days) if args.days else None
    with _session(settings) as db:
        partner = partner_service.get_by_slug(db, args.partner)
        credential, key = partner_service.create_credential(
            db,
            partner=partner,
            actor=CLI_ACTOR,
            name=args.name,
            expires_at=expires,  # type: ignore[arg-type]
        )
    _emit(
        args,
        {"partner": args.partner, "credential_id": credential.id, "key": key},
        f"credential {credential.id} for {args.partner}: key {key}  (shown only now)",
    )
    return 0


def cmd_credential_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with _session(settings) as db:
        credential = auth_service.revoke(db, args.credential_id, actor=CLI_ACTOR)
    print(f"credential {credential.id} revoked")
    return 0


def _load_agreement_file(path: str) -> object:
    from policies.schemas import load_agreement_yaml

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return load_agreement_yaml(text, source=path)


def cmd_agreement_apply(args: argparse.Namespace, settings: Settings) -> int:
    # All files or none: one transaction, so a bad file leaves nothing half-applied.
    with _session(settings) as db:
        results = [
            agreement_service.apply(db, _load_agreement_file(path), actor=CLI_ACTOR, source=path)
            for path in args.files
        ]
    for path, applied in zip(args.files, results):
        state = f"version {applied.version}" if applied.changed else f"unchanged (version {applied.version})"
        print(f"{path}: agreement with {applied.partner}: {state}")
        for change in applied.changes:
            print(f"    {change['path']}: {change.get('old')!r} -> {change.get('new')!r}")
        for warning in applied.warnings:
            print(f"    warning: {warning}")
    return 0


def cmd_agreement_export(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    with _session(settings) as db:
        documents = agreement_service.export_all(db)
    if not args.dir:
        print(yaml.safe_dump_all(documents, sort_keys=False), end="")
        return 0
    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    for doc in documents:
        path = target / f"{doc['partner']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        print(path)
    return 0


def cmd_agreement_preview(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.agreement import preview as preview_service
    from exchange.database.types import utcnow

    with _session(settings) as db:
        if args.file:
            doc = agreement_service.validate(db, _load_agreement_file(args.file), source=args.file)
        else:
            doc = agreement_service.validate(db, agreement_service.current_document(db, args.partner))
        report = preview_service.preview(db, doc, now=utcnow(), sample_size=args.sample)
    if args.json:
        print(json.dumps(report))
        return 0
    note = " (draft, previewed as if active)" if report["previewed_as_active"] else ""
    print(f"{report['partner']} would see {report['total']} objects{note}")
    for coll in report["collections"]:
        if not coll["granted"]:
            print(f"  {coll['collection']}: nothing (not granted now)")
            continue
        print(f"  {coll['collection']}: {coll['total']}")
        print("    by type: " + ", ".join(f"{k} {v}" for k, v in sorted(coll["by_type"].items())))
        print("    by TLP:  " + ", ".join(f"{k} {v}" for k, v in sorted(coll["by_tlp"].items())))
        for obj in coll["sample"]:
            print(f"    e.g. {obj.get('id')}  {obj.get('name', '')}")
    return 0


def cmd_audit_list(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit

    with _session(settings) as db:
        events = audit.list_(db, limit=args.limit, action=args.event_action)
        rows = [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "details": json.loads(e.details),
            }
            for e in events
        ]
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        print(
            f"{r['seq']:>6} {r['at']}  {r['actor']:24} {r['action']:22} {r['target']}  {json.dumps(r['details'])}"
        )
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit

    with _session(settings) as db:
        report = audit.verify(db)
    if report.ok:
        print(f"audit trail intact: {report.events} events")
        return 0
    print(f"audit trail TAMPERED ({report.events} events):", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.export.service import export_bundle, signer
    from exchange.intel.timestamps import text_to_us
    from exchange.signing import KeyRing, default_directory

    after = None
    if args.added_after:
        try:
            after = text_to_us(args.added_after)
        except ValueError as exc:
            raise BadRequestError(f"--added-after: {exc}") from None
    keyring = KeyRing(default_directory(settings))
    keyring.ensure()
    with _session(settings) as db:
        result = export_bundle(
            db,
            partner_slug=args.partner,
            collection_ref=args.collection,
            api_root=settings.api_root,
            actor=CLI_ACTOR,
            exchange_identity=settings.identity_id,
            added_after_us=after,
            sign=signer(keyring, settings.identity_id),
        )
    out = Path(args.output)
    out.write_bytes(result.bundle_bytes)
    Path(f"{out}.jws").write_text((result.signature or "") + "\n", encoding="ascii")
    print(f"{out}: {result.count} objects for {args.partner}, signed; signature also in {out}.jws")
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
    from exchange.feed.cli import register as register_feed_commands
    from feeds.sources import check_options as check_feed_options

    feed = register_feed_commands(sub, add, check_feed_options)
    p = add("run", cmd_feed_run, "run a feed now, with progress and a summary", feed)
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    add("scheduler", cmd_scheduler, "run feeds, push delivery and housekeeping (one process leads)")
    p = add("serve", cmd_serve, "serve TAXII, the REST API and pages (and the scheduler, unless told not to)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--no-scheduler", action="store_true", help="leave feeds and pushes to `exchange scheduler`"
    )
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

    partner = sub.add_parser("partner", help="partner organisations").add_subparsers(
        dest="action", required=True
    )
    p = add("add", cmd_partner_add, "add a partner and print its first credential's key once", partner)
    p.add_argument("slug")
    p.add_argument("--name", required=True)
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. IN")
    p.add_argument("--contact", default="")
    p.add_argument("--identity", help="the STIX identity id that represents the partner")
    p.add_argument("--json", action="store_true")
    p = add("list", cmd_partner_list, "list partners", partner)
    p.add_argument("--json", action="store_true")
    p = add("suspend", cmd_partner_status, "suspend a partner: it is granted nothing", partner)
    p.add_argument("slug")
    p.set_defaults(status="suspended")
    p = add("activate", cmd_partner_status, "reactivate a suspended partner", partner)
    p.add_argument("slug")
    p.set_defaults(status="active")

    p = add(
        "push-auth",
        cmd_partner_push_auth,
        "credentials for push delivery to the partner's own TAXII server",
        partner,
    )
    p.add_argument("slug")
    p.add_argument("--username")
    p.add_argument("--password-env", help="environment variable holding the password")
    p.add_argument("--header-env", action="append", metavar="HEADER=VARIABLE")
    p.add_argument("--clear", action="store_true", help="remove the stored credentials")

    push = sub.add_parser("push", help="push delivery to partners' own TAXII servers").add_subparsers(
        dest="action", required=True
    )
    p = add(
        "run", cmd_push_run, "push to a partner now: what its agreement allows and it has not received", push
    )
    p.add_argument("slug")
    p = add("status", cmd_push_status, "how far push delivery to a partner has got, per collection", push)
    p.add_argument("slug")
    p.add_argument("--json", action="store_true")

    cred = sub.add_parser("credential", help="partner credentials").add_subparsers(
        dest="action", required=True
    )
    p = add("create", cmd_credential_create, "another credential for a partner; key printed once", cred)
    p.add_argument("partner")
    p.add_argument("--name")
    p.add_argument("--days", type=int, help="expires after this many days")
    p.add_argument("--json", action="store_true")
    p = add("revoke", cmd_credential_revoke, "revoke a credential at once", cred)
    p.add_argument("credential_id")

    agr = sub.add_parser("agreement", help="sharing agreements").add_subparsers(dest="action", required=True)
    p = add("apply", cmd_agreement_apply, "validate and store agreement YAML files (all or none)", agr)
    p.add_argument("files", nargs="+", metavar="FILE")
    p = add("export", cmd_agreement_export, "write current agreements as YAML (one file each in DIR)", agr)
    p.add_argument("dir", nargs="?")
    p = add("preview", cmd_agreement_preview, "what a partner would see now", agr)
    p.add_argument("partner")
    p.add_argument("--file", help="preview this draft YAML instead of the stored agreement")
    p.add_argument("--sample", type=int, default=3)
    p.add_argument("--json", action="store_true")

    aud = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    p = add("list", cmd_audit_list, "newest audit events", aud)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--action", dest="event_action")
    p.add_argument("--json", action="store_true")
    add("verify", cmd_audit_verify, "check the hash chain; exit 1 if tampered", aud)

    from exchange.signing import cli as signing_cli

    keys = sub.add_parser("signing-key", help="the exchange's Ed25519 signing keys").add_subparsers(
        dest="action", required=True
    )
    p = add(
        "rotate",
        signing_cli.cmd_signing_key_rotate,
        "make the pre-published next key current; the old one stays published as retired",
        keys,
    )
    p.add_argument("--json", action="store_true")
    p = add("remove", signing_cli.cmd_signing_key_remove, "stop publishing a retired key", keys)
    p.add_argument("kid")
    add("jwks", signing_cli.cmd_signing_key_jwks, "print the published JWKS (current, next, retired)", keys)

    p = add("export", cmd_export, "write a signed STIX bundle exactly as a partner's agreement allows")
    p.add_argument("collection")
    p.add_argument("--partner", required=True)
    p.add_argument("--added-after")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p = add("verify", signing_cli.cmd_verify, "check the signature of a bundle, sidecar or saved envelope")
    p.add_argument("file")
    p.add_argument("--jwks", help="URL or file of the signer's JWKS (default: this exchange's keys)")
    p.add_argument("--audience", help="require this aud (partner slug)")
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
    except AgreementError as exc:
        print(f"exchange: invalid agreement: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
