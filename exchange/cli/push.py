"""`exchange push run|status` and `exchange partner push-auth`: push delivery to partners' own
TAXII servers."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_push_run(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit
    from exchange.database.core import make_session_factory, session_scope
    from exchange.errors import BadRequestError
    from exchange.partner import service as partner_service
    from feeds.delivery import push_partner, push_targets

    engine = store.open_engine(settings)
    try:
        factory = make_session_factory(engine)
        with session_scope(factory, write=True) as db:
            partner_service.get_by_slug(db, args.slug)
            if args.slug not in {t.slug for t in push_targets(db)}:
                raise BadRequestError(
                    f"partner {args.slug!r} has no push delivery in force (an active agreement "
                    "with a push section, inside its validity window)"
                )
            audit.record(db, actor=CLI_ACTOR, action="push.run", target=args.slug)
        summary = push_partner(factory, settings, store.keyring(settings), args.slug, requested_by="cli")
    finally:
        engine.dispose()
    print(summary.line())
    return 1 if summary.status == "failed" else 0


def cmd_push_status(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.push.service import push_status

    with store.session(settings) as db:
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


def cmd_partner_push_auth(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.cli.feed import auth_from_args
    from exchange.errors import BadRequestError
    from exchange.push import service as push_service

    auth = None if args.clear else auth_from_args(args)
    if auth is None and not args.clear:
        raise BadRequestError("give --username with --password-env, or --header-env, or --clear")
    with store.session(settings) as db:
        push_service.set_push_auth(
            db, args.slug, None if auth is None else auth.model_dump(exclude_none=True), actor=CLI_ACTOR
        )
    print(f"push credentials for {args.slug} {'cleared' if auth is None else 'set'}")
    return 0


def register(sub: Any) -> None:
    push = group(sub, "push", "push delivery to partners' own TAXII servers")
    p = command(
        push, "run", cmd_push_run, "push to a partner now: what its agreement allows and it has not received"
    )
    p.add_argument("slug")
    p = command(push, "status", cmd_push_status, "how far push delivery to a partner has got, per collection")
    p.add_argument("slug")
    p.add_argument("--json", action="store_true")


def register_push_auth(partner: Any) -> None:
    """`exchange partner push-auth`, a command of the partner group."""
    p = command(
        partner,
        "push-auth",
        cmd_partner_push_auth,
        "credentials for push delivery to the partner's own TAXII server",
    )
    p.add_argument("slug")
    p.add_argument("--username")
    p.add_argument("--password-env", help="environment variable holding the password")
    p.add_argument("--header-env", action="append", metavar="HEADER=VARIABLE")
    p.add_argument("--clear", action="store_true", help="remove the stored credentials")
