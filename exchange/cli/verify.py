"""`exchange verify`: check the signature of a bundle, sidecar or saved envelope."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import command

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Verify args.file against args.jwks (URL or file), else the local keyring's published keys."""
    from datetime import datetime

    from exchange.signing.verify import SignatureError, load_jwks, verify_file

    as_json = getattr(args, "json", False)
    source = getattr(args, "jwks", None)
    jwks = load_jwks(source) if source else store.keyring(settings).jwks()
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
        datetime.fromtimestamp(iat, UTC).isoformat().replace("+00:00", "Z") if isinstance(iat, int) else "-"
    )
    print(
        f"OK: signed by kid {result.kid} ({result.alg}), iat {when}, aud {result.aud or '-'}, "
        f"iss {result.iss or '-'}"
    )
    return 0


def register(sub: Any) -> None:
    p = command(sub, "verify", cmd_verify, "check the signature of a bundle, sidecar or saved envelope")
    p.add_argument("file")
    p.add_argument("--jwks", help="URL or file of the signer's JWKS (default: this exchange's keys)")
    p.add_argument("--audience", help="require this aud (partner slug)")
    p.add_argument("--json", action="store_true")
