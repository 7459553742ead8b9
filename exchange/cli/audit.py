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
    from exchange.audit import service as audit

    with store.session(settings) as db:
        report = audit.verify(db)
    if report.ok:
        print(f"audit trail intact: {report.events} events")
        return 0
    print(f"audit trail TAMPERED ({report.events} events):", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def register(sub: Any) -> None:
    aud = group(sub, "audit", "the audit trail")
    p = command(aud, "list", cmd_audit_list, "newest audit events")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--action", dest="event_action")
    p.add_argument("--json", action="store_true")
    command(aud, "verify", cmd_audit_verify, "check the hash chain; exit 1 if tampered")
