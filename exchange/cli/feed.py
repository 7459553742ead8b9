"""`exchange feed add|set|list|runs|enable|disable|remove|run`: external feeds pulled on a schedule."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR as ACTOR
from exchange.cli.common import command, group
from exchange.errors import BadRequestError
from exchange.feed.kinds import KINDS

if TYPE_CHECKING:
    from exchange.config import Settings
    from exchange.feed.schemas import FeedAuth, FeedRead


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.options_json:
        try:
            options = json.loads(args.options_json)
        except ValueError as exc:
            raise BadRequestError(f"--options-json is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise BadRequestError("--options-json must be a JSON object")
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequestError(f"--option takes key=value, not {item!r}")
        options[key] = _option_value(value)
    return options


def _secret_from_env(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise BadRequestError(f"environment variable {variable} (the {what}) is unset or empty")
    return value


def auth_from_args(args: argparse.Namespace) -> FeedAuth | None:
    """Credentials from --username/--password-env and --header-env (secrets only via the environment)."""
    from exchange.feed.schemas import FeedAuth

    headers = {}
    for item in args.header_env or []:
        name, sep, variable = item.partition("=")
        if not sep:
            raise BadRequestError(f"--header-env takes Header-Name=ENV_VARIABLE, not {item!r}")
        headers[name] = _secret_from_env(variable, f"{name} header")
    if args.username is None and not headers:
        return None
    password = None
    if args.username is not None:
        if not args.password_env:
            raise BadRequestError(
                "--username needs --password-env naming the variable that holds the password"
            )
        password = _secret_from_env(args.password_env, "password")
    return FeedAuth(username=args.username, password=password, headers=headers or None)


def _ca(path: str | None) -> str | None:
    from pathlib import Path

    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise BadRequestError(f"cannot read the CA bundle {path}: {exc.strerror}") from None


def cmd_feed_add(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed import service
    from exchange.feed.schemas import FeedCreate
    from feeds.sources import check_options as check

    feed_in = FeedCreate(
        name=args.name,
        kind=args.kind,
        url=args.url,
        collection=args.collection,
        every=args.every,
        cron=args.cron,
        tlp=args.tlp,
        confidence=args.confidence,
        warninglists=args.warninglists,
        ca_bundle=_ca(args.ca_file),
        timeout=args.timeout,
        options=_options(args),
        auth=auth_from_args(args),
        enabled=not args.disabled,
    )
    with store.session(settings) as db:
        view = service.read(db, service.create(db, feed_in, actor=ACTOR, check_options=check))
    _show(
        args,
        view,
        f"feed {view.name} added: {view.kind} {service.safe_url(view.url)} -> {view.collection}, "
        f"{_schedule(view)}, unmarked objects TLP:{view.tlp.upper()}"
        + ("" if view.enabled else " (disabled)"),
    )
    return 0


def cmd_feed_list(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed import service

    with store.session(settings) as db:
        views = [service.read(db, feed) for feed in service.list_(db)]
    if args.json:
        print(json.dumps([v.model_dump(mode="json") for v in views]))
        return 0
    if not views:
        print("no feeds; add one with: exchange feed add NAME --kind text --url URL --collection indicators")
        return 0
    print(f"{'NAME':20} {'KIND':11} {'HEALTH':9} {'SCHEDULE':16} {'LAST RUN':36} NEXT RUN")
    for v in views:
        last = "never"
        if v.last_run:
            r = v.last_run
            last = f"{r.status} {r.started_at:%Y-%m-%d %H:%M} +{r.new}/~{r.updated}/!{r.failed}"
        state = v.health if v.enabled else "disabled"
        nxt = f"{v.next_run_at:%Y-%m-%d %H:%M}Z" if v.next_run_at else "-"
        print(f"{v.name:20} {v.kind:11} {state:9} {_schedule(v):16} {last:36} {nxt}")
    return 0


def cmd_feed_runs(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed import service

    with store.session(settings) as db:
        feed = service.get_by_name(db, args.name)
        runs = [service.run_read(r) for r in service.runs(db, feed, limit=args.limit)]
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in runs]))
        return 0
    for r in runs:
        print(
            f"#{r.id} {r.started_at:%Y-%m-%d %H:%M:%S} {r.trigger:8} {r.status:9} fetched {r.fetched} new {r.new} "
            f"updated {r.updated} unchanged {r.unchanged} dropped {r.dropped} failed {r.failed}"
            + (f"  error: {r.error}" if r.error else "")
        )
        for failure in r.failures[:5]:
            print(f"    {failure.get('id') or '-'}: {failure.get('message')}")
    return 0


def cmd_feed_enable(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed import service

    with store.session(settings) as db:
        feed = service.set_enabled(db, args.name, args.action == "enable", actor=ACTOR)
    print(f"feed {feed.name} {'enabled' if feed.enabled else 'disabled'}")
    return 0


def cmd_feed_set(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed import service
    from exchange.feed.schemas import FeedUpdate
    from feeds.sources import check_options as check

    fields: dict[str, Any] = {}
    for name in ("url", "collection", "every", "cron", "tlp", "confidence", "timeout"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.warninglists is not None:
        fields["warninglists"] = args.warninglists == "on"
    if args.ca_file is not None:
        fields["ca_bundle"] = _ca(args.ca_file) if args.ca_file else None
    if args.option or args.options_json:
        fields["options"] = _options(args)
    auth = auth_from_args(args)
    if auth is not None:
        fields["auth"] = auth
    if not fields:
        raise BadRequestError("nothing to change; see exchange feed set --help")
    with store.session(settings) as db:
        view = service.read(
            db, service.update_(db, args.name, FeedUpdate(**fields), actor=ACTOR, check_options=check)
        )
    _show(args, view, f"feed {view.name} changed: {', '.join(sorted(fields))}")
    return 0


def cmd_feed_remove(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed import service

    with store.session(settings) as db:
        service.delete(db, args.name, actor=ACTOR)
    print(f"feed {args.name} removed (what it brought in stays)")
    return 0


def _schedule(view: FeedRead) -> str:
    return f"every {view.every}" if view.every else f"cron {view.cron}"


def _show(args: argparse.Namespace, view: FeedRead, text: str) -> None:
    print(json.dumps(view.model_dump(mode="json")) if getattr(args, "json", False) else text)


def _connection_arguments(p: argparse.ArgumentParser, *, adding: bool) -> None:
    p.add_argument("--every", help='interval, e.g. "15m", "1h", "1d" (default 1h)')
    p.add_argument("--cron", help='crontab expression in UTC, e.g. "0 */6 * * *"')
    p.add_argument(
        "--tlp", default="amber" if adding else None, help="TLP for objects the feed leaves unmarked"
    )
    p.add_argument("--confidence", type=int, help="confidence (0-100) for objects without one")
    p.add_argument("--ca-file", help="PEM file of the CA that signs the feed's certificate")
    p.add_argument(
        "--timeout", type=float, default=30.0 if adding else None, help="seconds to wait for the server"
    )
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="kind-specific option (JSON value)")
    p.add_argument("--options-json", help="kind-specific options as one JSON object")
    p.add_argument("--username", help="HTTP Basic user name")
    p.add_argument(
        "--password-env", help="environment variable holding the password (never on the command line)"
    )
    p.add_argument(
        "--header-env",
        action="append",
        metavar="HEADER=VARIABLE",
        help="send a header whose value is in an environment variable, e.g. Authorization=MISP_KEY",
    )
    p.add_argument("--json", action="store_true")


def cmd_feed_run(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from exchange.database.core import make_session_factory
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

    engine = store.open_engine(settings)
    try:
        summary = run_feed(
            make_session_factory(engine),
            settings,
            args.name,
            trigger="manual",
            progress=progress,
            actor=ACTOR,
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


def register(sub: Any) -> None:
    """Add the `feed` commands to the CLI."""
    feed = group(sub, "feed", "external feeds pulled on a schedule")
    p = command(feed, "add", cmd_feed_add, "add a feed")
    p.add_argument("name")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--url", required=True)
    p.add_argument("--collection", required=True, help="alias of the collection it fills")
    p.add_argument("--warninglists", action="store_true", help="drop values on MISP warninglists")
    p.add_argument("--disabled", action="store_true", help="add it without scheduling it")
    _connection_arguments(p, adding=True)
    p = command(feed, "set", cmd_feed_set, "change a feed's settings")
    p.add_argument("name")
    p.add_argument("--url")
    p.add_argument("--collection")
    p.add_argument("--warninglists", choices=("on", "off"))
    _connection_arguments(p, adding=False)
    p = command(feed, "list", cmd_feed_list, "feeds with health, last run and next run")
    p.add_argument("--json", action="store_true")
    p = command(feed, "runs", cmd_feed_runs, "a feed's recent runs with counts and errors")
    p.add_argument("name")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--json", action="store_true")
    for action in ("enable", "disable"):
        p = command(feed, action, cmd_feed_enable, f"{action} a feed")
        p.add_argument("name")
    p = command(feed, "remove", cmd_feed_remove, "remove a feed (its objects stay)")
    p.add_argument("name")
    p = command(feed, "run", cmd_feed_run, "run a feed now, with progress and a summary")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
