"""What every command group shares: the audit actor, --json output, the URLs it prints."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exchange.config import Settings

CLI_ACTOR = "cli"


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if getattr(args, "json", False) else text)


def urls(settings: Settings, host: str | None = None, port: int | None = None) -> dict[str, str]:
    base = (settings.public_url or f"http://{host or settings.host}:{port or settings.port}").rstrip("/")
    return {
        "taxii_discovery": f"{base}/taxii2/",
        "api_root": f"{base}/taxii2/{settings.api_root}/",
        "openapi": f"{base}/api/v1/docs",
        "health": f"{base}/healthz",
    }


DATA_DIR_HELP = (
    "the exchange's data directory: its SQLite database, signing keys and secret "
    "(default: $EXCHANGE_DATA_DIR, else ./exchange-data)"
)


def data_dir_argument(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """--data-dir, accepted before the command and after it (the one after wins)."""
    parser.add_argument(
        "--data-dir",
        type=_directory,
        # Only the top level sets a default, so an absent --data-dir after the command keeps the one before.
        default=None if top else argparse.SUPPRESS,
        metavar="DIR",
        help=DATA_DIR_HELP if top else "the exchange's data directory (see exchange --help)",
    )


def _directory(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("give a directory")
    return text


def command(parent: Any, name: str, func: Any, help_: str) -> argparse.ArgumentParser:
    """One command under `parent` (a subparsers action), run as func(args, settings)."""
    p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    return p


def group(sub: Any, name: str, help_: str) -> Any:
    """A command group such as `partner`: its subparsers, for `command` to add to."""
    return sub.add_parser(name, help=help_).add_subparsers(dest="action", required=True)
