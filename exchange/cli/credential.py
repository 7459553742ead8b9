"""`exchange credential create|revoke`: partner credentials."""

from __future__ import annotations

import argparse
from datetime import UTC
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, emit, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_credential_create(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import datetime, timedelta

    from exchange.partner import service as partner_service

    expires = datetime.now(UTC) + timedelta(days=args.days) if args.days else None
    with store.session(settings) as db:
        partner = partner_service.get_by_slug(db, args.partner)
        credential, key = partner_service.create_credential(
            db,
            partner=partner,
            actor=CLI_ACTOR,
            name=args.name,
            expires_at=expires,
        )
    emit(
        args,
        {"partner": args.partner, "credential_id": credential.id, "key": key},
        f"credential {credential.id} for {args.partner}: key {key}  (shown only now)",
    )
    return 0


def cmd_credential_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.auth import service as auth_service

    with store.session(settings) as db:
        credential = auth_service.revoke(db, args.credential_id, actor=CLI_ACTOR)
    print(f"credential {credential.id} revoked")
    return 0


def register(sub: Any) -> None:
    cred = group(sub, "credential", "partner credentials")
    p = command(cred, "create", cmd_credential_create, "another credential for a partner; key printed once")
    p.add_argument("partner")
    p.add_argument("--name")
    p.add_argument("--days", type=int, help="expires after this many days")
    p.add_argument("--json", action="store_true")
    p = command(cred, "revoke", cmd_credential_revoke, "revoke a credential at once")
    p.add_argument("credential_id")
