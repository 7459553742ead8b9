"""`exchange signing-key rotate|remove|jwks`: the exchange's Ed25519 signing keys."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_signing_key_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit

    keyring = store.keyring(settings)
    with store.session(settings) as db:
        old, current, upcoming = keyring.rotate()
        audit.record(
            db,
            actor=CLI_ACTOR,
            action="signing.key.rotate",
            target=current,
            details={"retired": old, "current": current, "next": upcoming},
        )
    if getattr(args, "json", False):
        print(json.dumps({"retired": old, "current": current, "next": upcoming}))
    else:
        print("Rotated the signing keys:")
        print(f"  retired  {old}  (still published, for verifying archives)")
        print(f"  current  {current}")
        print(f"  next     {upcoming}  (pre-published)")
    return 0


def cmd_signing_key_remove(args: argparse.Namespace, settings: Settings) -> int:
    """Stop publishing a retired key (args.kid); signatures made with it no longer verify."""
    from exchange.audit import service as audit

    keyring = store.keyring(settings)
    with store.session(settings) as db:
        keyring.remove_retired(args.kid)
        audit.record(db, actor=CLI_ACTOR, action="signing.key.remove", target=args.kid)
    print(f"Removed retired signing key {args.kid} from the JWK Set and deleted its private key.")
    return 0


def cmd_signing_key_jwks(args: argparse.Namespace, settings: Settings) -> int:
    jwks = store.keyring(settings).jwks()
    print(json.dumps(jwks, indent=2))
    if not jwks["keys"]:
        print("exchange: no signing keys yet; `exchange init` creates them", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    keys = group(sub, "signing-key", "the exchange's Ed25519 signing keys")
    p = command(
        keys,
        "rotate",
        cmd_signing_key_rotate,
        "make the pre-published next key current; the old one stays published as retired",
    )
    p.add_argument("--json", action="store_true")
    p = command(keys, "remove", cmd_signing_key_remove, "stop publishing a retired key")
    p.add_argument("kid", help="the retired key's id; put `--` before one that starts with `-`")
    command(keys, "jwks", cmd_signing_key_jwks, "print the published JWKS (current, next, retired)")
