"""`exchange signing-key rotate|remove|jwks` and `exchange verify`: plain functions the CLI wires in."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone


from exchange.config import Settings
from exchange.signing.keys import KeyRing, default_directory
from exchange.signing.verify import SignatureError, load_jwks, verify_file

CLI_ACTOR = "cli"


def keyring_for(settings: Settings) -> KeyRing:
    """The exchange's keyring (EXCHANGE_SIGNING_KEY_DIR, else <data_dir>/signing)."""
    settings.ensure_data_dir()
    return KeyRing(default_directory(settings))


def _audit_session(settings: Settings):  # type: ignore[no-untyped-def]
    from exchange.bootstrap import command_session

    return command_session(settings)


def cmd_signing_key_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit

    keyring = keyring_for(settings)
    with _audit_session(settings) as db:
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

    keyring = keyring_for(settings)
    with _audit_session(settings) as db:
        keyring.remove_retired(args.kid)
        audit.record(db, actor=CLI_ACTOR, action="signing.key.remove", target=args.kid)
    print(f"Removed retired signing key {args.kid} from the JWK Set and deleted its private key.")
    return 0


def cmd_signing_key_jwks(args: argparse.Namespace, settings: Settings) -> int:
    jwks = keyring_for(settings).jwks()
    print(json.dumps(jwks, indent=2))
    if not jwks["keys"]:
        print("exchange: no signing keys yet; `exchange init` creates them", file=sys.stderr)
        return 1
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Verify args.file against args.jwks (URL or file), else the local keyring's published keys."""
    as_json = getattr(args, "json", False)
    source = getattr(args, "jwks", None)
    jwks = load_jwks(source) if source else keyring_for(settings).jwks()
    try:
        result = verify_file(args.file, jwks=jwks, audience=getattr(args, "audience", None))
    except SignatureError as exc:
        if as_json:
            print(json.dumps({"ok": False, "reason": exc.reason, "detail": exc.detail}))
        else:
            print(f"FAILED: {exc.reason}")
            if exc.detail:
                print(f"  {exc.detail}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"exchange: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"ok": True, "kid": result.kid, "header": result.header}))
        return 0
    iat = result.iat
    when = (
        datetime.fromtimestamp(iat, timezone.utc).isoformat().replace("+00:00", "Z")
        if isinstance(iat, int)
        else "-"
    )
    print(
        f"OK: signed by kid {result.kid} ({result.alg}), iat {when}, aud {result.aud or '-'}, "
        f"iss {result.iss or '-'}"
    )
    return 0
