"""`exchange export`: a signed STIX bundle exactly as a partner's agreement allows."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from exchange.errors import BadRequestError
    from exchange.export.service import export_bundle, signer
    from exchange.intel.timestamps import text_to_us

    after = None
    if args.added_after:
        try:
            after = text_to_us(args.added_after)
        except ValueError as exc:
            raise BadRequestError(f"--added-after: {exc}") from None
    keyring = store.keyring(settings)
    keyring.ensure()
    with store.session(settings) as db:
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
    detached = getattr(args, "signature", "embedded") == "detached"
    out.write_bytes(result.unsigned_bytes if detached else result.bundle_bytes)
    Path(f"{out}.jws").write_text((result.signature or "") + "\n", encoding="ascii")
    where = f"signature in {out}.jws only" if detached else f"signature also in {out}.jws"
    print(f"{out}: {result.count} objects for {args.partner}, signed; {where}")
    return 0


def register(sub: Any) -> None:
    p = command(
        sub, "export", cmd_export, "write a signed STIX bundle exactly as a partner's agreement allows"
    )
    p.add_argument("collection")
    p.add_argument("--partner", required=True)
    p.add_argument("--added-after")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument(
        "--signature",
        choices=("embedded", "detached"),
        default="embedded",
        help="embedded: also in the bundle property x_exchange_jws; detached: only in FILE.jws, "
        "leaving a bundle that passes strict STIX validation",
    )
