"""`exchange report reciprocity|dashboard|delivery`: the staff's figures, on the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import command, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_report_reciprocity(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.database.types import utcnow
    from exchange.report import service

    start, end = service.window(args.since, args.until, now=utcnow())
    with store.session(settings) as db:
        report = service.reciprocity(db, since=start, until=end)
    if args.json:
        print(report.model_dump_json())
        return 0
    if args.csv:
        import csv

        fields = ["partner", "collection", "tlp", "contributed", "received", "deliveries", "ratio"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in service.reciprocity_rows(report):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return 0
    print(f"reciprocity from {report.since.isoformat()} until {report.until.isoformat()} (exclusive)")
    print(f"{'partner':24} {'contributed':>11} {'received':>9} {'ratio':>7}")
    for p in report.partners:
        ratio = "-" if p.ratio is None else f"{p.ratio:.3f}"
        print(f"{p.partner:24} {p.contributed:>11} {p.received:>9} {ratio:>7}")
        for c in p.cells:
            print(f"    {c.collection + ' / ' + c.tlp:20} {c.contributed:>11} {c.received:>9}")
    print(f"{'total':24} {report.contributed:>11} {report.received:>9}")
    return 0


def cmd_report_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.database.types import utcnow
    from exchange.report import service

    with store.session(settings) as db:
        board = service.dashboard(db, now=utcnow(), days=args.days)
    if args.json:
        print(board.model_dump_json())
        return 0
    for p in board.partners:
        figures = ", ".join(
            f"{w.days}d {w.contributed} in / {w.received} out"
            + (f" ({w.ratio:.3f})" if w.ratio is not None else "")
            for w in p.windows
        )
        until = "no agreement"
        if p.agreement_valid_until is not None:
            until = f"agreement until {p.agreement_valid_until} ({p.agreement_days_left} days)"
            if p.agreement_expiring:
                until += " WARNING: ends soon"
        pull = p.last_pull.isoformat() if p.last_pull else "never"
        print(f"{p.partner}: {figures}; last pull {pull}; {until}")
        if p.revocations_not_received:
            print(f"    {p.revocations_not_received} revocation(s) not received yet")
    for f in board.feeds:
        print(
            f"feed {f.name}: {f.health}, last run {f.last_run_status or 'none'}, failures {f.consecutive_failures}"
        )
    total = sum(d.versions for d in board.added_per_day)
    print(f"object versions added in the last {args.days} days: {total}")
    return 0


def cmd_report_delivery(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.report import service

    with store.session(settings) as db:
        delivery = service.incident_delivery(db, args.incident)
    if args.json:
        print(delivery.model_dump_json())
        return 0
    print(f"incident {delivery.incident}")
    for o in delivery.objects:
        revoked = " revoked" if o.revoked else ""
        print(f"  {o.stix_id} [{o.collection}, TLP:{o.tlp.upper()}] {o.latest_version}{revoked}")
    for r in delivery.receipts:
        print(f"  {r.partner} received {r.stix_id} version {r.version} by {r.channel} ({r.times}x)")
    for s in delivery.sightings:
        print(f"  {s.partner} sighted {s.sighting_of} ({s.sighting_id})")
    for m in delivery.revocations_not_received:
        print(f"  {m['partner']} has not received the revocation of {m['stix_id']}")
    return 0


def register(sub: Any) -> None:
    grp = group(sub, "report", "figures for staff: reciprocity, dashboard, incident delivery")
    p = command(grp, "reciprocity", cmd_report_reciprocity, "per partner: objects contributed vs received")
    p.add_argument(
        "--since", help="a date (2026-09-01) or ISO date and time; default: 90 days before --until"
    )
    p.add_argument("--until", help="a date (the whole day counts) or ISO date and time; default: now")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="one row per partner, collection and TLP")
    out.add_argument("--json", action="store_true")
    p = command(grp, "dashboard", cmd_report_dashboard, "the dashboard's figures")
    p.add_argument("--days", type=int, default=30, help="days of objects added per day (default 30)")
    p.add_argument("--json", action="store_true")
    p = command(grp, "delivery", cmd_report_delivery, "an incident's objects and who received them")
    p.add_argument("incident", help="incident--<uuid>")
    p.add_argument("--json", action="store_true")
