"""`exchange credential create|revoke|bind-cert`: partner credentials."""

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


def cmd_credential_bind_cert(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from exchange.auth import certs
    from exchange.auth import service as auth_service
    from exchange.errors import BadRequestError

    try:
        if args.unbind:
            fingerprint = None
        elif args.cert:
            fingerprint = certs.fingerprint(Path(args.cert).read_bytes())
        else:
            fingerprint = certs.normalise_fingerprint(args.fingerprint)
    except OSError as exc:
        raise BadRequestError(f"cannot read {args.cert}: {exc.strerror}") from None
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    with store.session(settings) as db:
        credential = auth_service.bind_certificate(db, args.credential_id, fingerprint, actor=CLI_ACTOR)
    if fingerprint:
        print(f"credential {credential.id} bound to the client certificate with SHA-256 {fingerprint}")
    else:
        print(f"credential {credential.id} no longer bound to a client certificate")
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
    p = command(
        cred,
        "bind-cert",
        cmd_credential_bind_cert,
        "bind a partner credential to its client certificate (verified by the TLS proxy)",
    )
    p.add_argument("credential_id")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", metavar="FILE", help="the partner's certificate (PEM)")
    which.add_argument(
        "--fingerprint", metavar="SHA256", help="its SHA-256 fingerprint (hex, colons allowed)"
    )
    which.add_argument("--unbind", action="store_true", help="remove the binding")
