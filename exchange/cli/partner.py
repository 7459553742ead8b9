"""`exchange partner add|list|suspend|activate|push-auth`: partner organisations (push-auth is
in exchange/cli/push.py with the rest of push delivery)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from exchange.cli import push, store
from exchange.cli.common import CLI_ACTOR, command, emit, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_partner_add(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.partner import service as partner_service

    with store.session(settings) as db:
        partner, credential, key = partner_service.create(
            db,
            slug=args.slug,
            name=args.name,
            country=args.country,
            contact=args.contact,
            identity_id=args.identity,
            actor=CLI_ACTOR,
        )
    emit(
        args,
        {"partner": partner.slug, "credential_id": credential.id, "key": key},
        f"partner {partner.slug} added; first credential id {credential.id}  key {key}  "
        "(the key is shown only now)",
    )
    return 0


def cmd_partner_list(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.partner import service as partner_service

    with store.session(settings) as db:
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
    from exchange.partner import service as partner_service

    with store.session(settings) as db:
        partner = partner_service.set_status(db, args.slug, args.status, actor=CLI_ACTOR)
    print(f"partner {partner.slug} is {partner.status}")
    return 0


def register(sub: Any) -> None:
    partner = group(sub, "partner", "partner organisations")
    p = command(partner, "add", cmd_partner_add, "add a partner and print its first credential's key once")
    p.add_argument("slug")
    p.add_argument("--name", required=True)
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. IN")
    p.add_argument("--contact", default="")
    p.add_argument("--identity", help="the STIX identity id that represents the partner")
    p.add_argument("--json", action="store_true")
    p = command(partner, "list", cmd_partner_list, "list partners")
    p.add_argument("--json", action="store_true")
    p = command(partner, "suspend", cmd_partner_status, "suspend a partner: it is granted nothing")
    p.add_argument("slug")
    p.set_defaults(status="suspended")
    p = command(partner, "activate", cmd_partner_status, "reactivate a suspended partner")
    p.add_argument("slug")
    p.set_defaults(status="active")
    push.register_push_auth(partner)
