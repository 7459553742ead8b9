"""`exchange user add`: internal users (administrators and analysts)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from exchange.auth.roles import INTERNAL_ROLES
from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, emit, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit
    from exchange.auth import service as auth_service

    with store.session(settings) as db:
        credential, key = auth_service.create_credential(db, name=args.name, role=args.role)
        audit.record(
            db,
            actor=CLI_ACTOR,
            action="user.create",
            target=credential.id,
            details={"name": args.name, "role": args.role},
        )
    emit(
        args,
        {"id": credential.id, "key": key},
        f"{args.role} {args.name}: id {credential.id}  key {key}  (the key is shown only now)",
    )
    return 0


def register(sub: Any) -> None:
    user = group(sub, "user", "internal users")
    p = command(user, "add", cmd_user_add, "add an internal user and print its key once")
    p.add_argument("name")
    p.add_argument("--role", choices=INTERNAL_ROLES, required=True)
    p.add_argument("--json", action="store_true")
