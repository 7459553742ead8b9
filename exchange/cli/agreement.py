"""`exchange agreement apply|export|preview|history|diff`: sharing agreements as YAML files."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, group

if TYPE_CHECKING:
    from exchange.config import Settings


def _load_agreement_file(path: str) -> object:
    from exchange.errors import BadRequestError
    from policies.schemas import load_agreement_yaml

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return load_agreement_yaml(text, source=path)


def cmd_agreement_apply(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.agreement import service as agreement_service

    # All files or none: one transaction, so a bad file leaves nothing half-applied.
    with store.session(settings) as db:
        results = [
            agreement_service.apply(db, _load_agreement_file(path), actor=CLI_ACTOR, source=path)
            for path in args.files
        ]
    for path, applied in zip(args.files, results, strict=False):
        state = f"version {applied.version}" if applied.changed else f"unchanged (version {applied.version})"
        print(f"{path}: agreement with {applied.partner}: {state}")
        for change in applied.changes:
            print(f"    {change['path']}: {change.get('old')!r} -> {change.get('new')!r}")
        for warning in applied.warnings:
            print(f"    warning: {warning}")
    return 0


def cmd_agreement_export(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    import yaml

    from exchange.agreement import service as agreement_service

    with store.session(settings) as db:
        documents = agreement_service.export_all(db)
    if not args.dir:
        print(yaml.safe_dump_all(documents, sort_keys=False), end="")
        return 0
    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    for doc in documents:
        path = target / f"{doc['partner']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        print(path)
    return 0


def cmd_agreement_preview(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.agreement import service as agreement_service
    from exchange.database.types import utcnow
    from exchange.sharing import preview as preview_service

    with store.session(settings) as db:
        if args.file:
            doc = agreement_service.validate(db, _load_agreement_file(args.file), source=args.file)
        else:
            doc = agreement_service.validate(db, agreement_service.current_document(db, args.partner))
        report = preview_service.preview(db, doc, now=utcnow(), sample_size=args.sample)
    if args.json:
        print(json.dumps(report))
        return 0
    note = " (draft, previewed as if active)" if report["previewed_as_active"] else ""
    print(f"{report['partner']} would see {report['total']} objects{note}")
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}")
    change = report["change"]
    if not report["unchanged"] or report["previewed_as_active"]:
        print(
            f"  compared with the {report['compared_with']}: {change['becomes_visible']} become visible, "
            f"{change['becomes_withheld']} become withheld{_reasons(change['withheld_by'])}"
        )
    for coll in report["collections"]:
        if not coll["granted"]:
            lost = coll["change"]["becomes_withheld"]
            print(
                f"  {coll['collection']}: nothing (not granted now)"
                + (f"; {lost} withheld from now" if lost else "")
            )
            continue
        print(f"  {coll['collection']}: {coll['total']}")
        if coll["total"]:
            print("    by type: " + ", ".join(f"{k} {v}" for k, v in sorted(coll["by_type"].items())))
            print("    by TLP:  " + ", ".join(f"{k} {v}" for k, v in sorted(coll["by_tlp"].items())))
        if coll["withheld"]:
            print(f"    withheld: {coll['withheld']}{_reasons(coll['withheld_by'])}")
        for obj in coll["sample"]:
            print(f"    e.g. {obj.get('id')}  {obj.get('name', '')}")
    return 0


def _reasons(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return (
        " ("
        + ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])))
        + ")"
    )


def cmd_agreement_history(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.agreement import service as agreement_service

    with store.session(settings) as db:
        versions = [
            {
                "version": v.version,
                "status": v.status,
                "valid_from": v.valid_from.isoformat(),
                "valid_until": v.valid_until.isoformat(),
                "created_by": v.created_by,
                "created_at": v.created_at.isoformat(),
            }
            for v in agreement_service.history(db, args.partner)
        ]
    if args.json:
        print(json.dumps(versions))
        return 0
    for v in versions:
        print(
            f"version {v['version']:>3}  {v['status']:9} {v['valid_from']} .. {v['valid_until']}  "
            f"by {v['created_by']} at {v['created_at']}"
        )
    return 0


def cmd_agreement_diff(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.agreement import service as agreement_service

    with store.session(settings) as db:
        found = agreement_service.version_diff(db, args.partner, args.from_version, args.to_version)
    if args.json:
        print(json.dumps(found.__dict__))
        return 0
    print(found.unified or f"versions {args.from_version} and {args.to_version} are the same", end="")
    if not found.unified:
        print()
    return 0


def register(sub: Any) -> None:
    agr = group(sub, "agreement", "sharing agreements")
    p = command(agr, "apply", cmd_agreement_apply, "validate and store agreement YAML files (all or none)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p = command(
        agr, "export", cmd_agreement_export, "write current agreements as YAML (one file each in DIR)"
    )
    p.add_argument("dir", nargs="?")
    p = command(agr, "preview", cmd_agreement_preview, "what a partner would see now")
    p.add_argument("partner")
    p.add_argument("--file", help="preview this draft YAML instead of the stored agreement")
    p.add_argument("--sample", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p = command(agr, "history", cmd_agreement_history, "every version of a partner's agreement")
    p.add_argument("partner")
    p.add_argument("--json", action="store_true")
    p = command(agr, "diff", cmd_agreement_diff, "a unified diff of two versions' YAML")
    p.add_argument("partner")
    p.add_argument("from_version", type=int, metavar="FROM")
    p.add_argument("to_version", type=int, metavar="TO")
    p.add_argument("--json", action="store_true")
