"""The `exchange` command."""

from __future__ import annotations

import argparse
import sys

from exchange.cli import (
    agreement,
    audit,
    collection,
    credential,
    export,
    feed,
    importing,
    lifecycle,
    partner,
    peer,
    push,
    report,
    signing,
    user,
    verify,
)
from exchange.cli.common import data_dir_argument
from exchange.cli.store import StoreError

# Every module above imports only the standard library at module level: `exchange --help` and
# argument errors never pay for SQLAlchemy, pydantic or the web stack; each command imports
# what it needs when it runs.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchange", description=__doc__)
    data_dir_argument(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    lifecycle.register_init(sub)
    feed.register(sub)
    lifecycle.register(sub)
    user.register(sub)
    collection.register(sub)
    partner.register(sub)
    push.register(sub)
    credential.register(sub)
    agreement.register(sub)
    audit.register(sub)
    signing.register(sub)
    export.register(sub)
    report.register(sub)
    verify.register(sub)
    peer.register(sub)
    importing.register(sub)
    _data_dir_after_every_command(parser)
    return parser


def _data_dir_after_every_command(parser: argparse.ArgumentParser) -> None:
    # Added last, so each command's help lists its own arguments first.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child.get_default("func") is None:
                    _data_dir_after_every_command(child)
                else:
                    data_dir_argument(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from exchange.config import Settings

        settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    except ValueError as exc:
        print(f"exchange: configuration error: {exc}", file=sys.stderr)
        return 2
    from exchange.errors import ExchangeError

    try:
        return int(args.func(args, settings) or 0)
    except StoreError as exc:
        print(f"exchange: {exc.message}", file=sys.stderr)
        return 2
    except ExchangeError as exc:
        print(f"exchange: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        from policies.schemas import AgreementError

        if not isinstance(exc, AgreementError):
            raise
        print(f"exchange: invalid agreement: {exc}", file=sys.stderr)
        return 1
