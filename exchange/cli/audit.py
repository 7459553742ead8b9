"""`exchange audit list|verify`: the audit trail and its hash chain."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import command, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_audit_list(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit

    with store.session(settings) as db:
        events = audit.list_(db, limit=args.limit, action=args.event_action)
        rows = [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "details": json.loads(e.details),
            }
            for e in events
        ]
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        print(
            f"{r['seq']:>6} {r['at']}  {r['actor']:24} {r['action']:22} {r['target']}  {json.dumps(r['details'])}"
        )
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from exchange.audit import service as audit
    from exchange.errors import BadRequestError

    checkpoints = []
    for path in args.checkpoint or []:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BadRequestError(f"{path}: cannot read: {exc.strerror}") from None
        checkpoints.append((path, audit.read_checkpoint(text, path)))
    with store.session(settings) as db:
        report = audit.verify(db, checkpoints=checkpoints)
    if report.ok:
        print(f"audit trail intact: {report.events} events")
        for line in report.proves:
            print(f"  proves: {line}")
    else:
        print(f"audit trail TAMPERED ({report.events} events):", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
    for line in report.cannot_prove:
        print(f"  cannot prove: {line}", file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def cmd_audit_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from exchange.audit import service as audit

    with store.session(settings) as db:
        checkpoint = audit.export_checkpoint(db, issuer=settings.identity_id)
    Path(args.file).write_text(json.dumps(checkpoint, indent=2) + "\n", encoding="utf-8")
    print(
        f"{args.file}: checkpoint of event {checkpoint['seq']}; keep it off this machine and give it to "
        "`exchange audit verify --checkpoint` later"
    )
    return 0


def register(sub: Any) -> None:
    aud = group(sub, "audit", "the audit trail")
    p = command(aud, "list", cmd_audit_list, "newest audit events")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--action", dest="event_action")
    p.add_argument("--json", action="store_true")
    p = command(
        aud, "verify", cmd_audit_verify, "check the hash chain and its signatures; exit 1 if tampered"
    )
    p.add_argument(
        "--checkpoint", action="append", metavar="FILE", help="also check against an exported checkpoint"
    )
    p = command(aud, "checkpoint", cmd_audit_checkpoint, "write a signed checkpoint of the trail to FILE")
    p.add_argument("file", metavar="FILE")
