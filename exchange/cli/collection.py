"""`exchange collection add|list`: TAXII collections."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, emit, group

if TYPE_CHECKING:
    from exchange.config import Settings


def cmd_collection_add(args: argparse.Namespace, settings: Settings) -> int:
    from exchange import bootstrap
    from exchange.audit import service as audit
    from exchange.intel import service

    with store.session(settings) as db:
        root = bootstrap.initialise(db, settings).api_root
        coll = service.create_collection(
            db,
            api_root=root,
            alias=args.alias,
            title=args.title or args.alias,
            description=args.description,
            default_tlp=args.default_tlp,
        )
        audit.record(
            db,
            actor=CLI_ACTOR,
            action="collection.create",
            target=coll.alias,
            details={"id": coll.id, "default_tlp": coll.default_tlp},
        )
    emit(
        args, {"id": coll.id, "alias": coll.alias, "title": coll.title}, f"collection {coll.alias}: {coll.id}"
    )
    return 0


def cmd_collection_list(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.intel import service

    with store.session(settings) as db:
        root = service.get_api_root(db, settings.api_root)
        rows = service.list_collections(db, api_root_pk=root.pk) if root else []
        data = [{"id": c.id, "alias": c.alias, "title": c.title, "default_tlp": c.default_tlp} for c in rows]
    if args.json:
        print(json.dumps(data))
    else:
        for c in data:
            print(f"{c['alias']:24} {c['id']}  {c['title']} (unmarked = {c['default_tlp']})")
    return 0


def register(sub: Any) -> None:
    coll = group(sub, "collection", "TAXII collections")
    p = command(coll, "add", cmd_collection_add, "add a collection")
    p.add_argument("alias")
    p.add_argument("--title")
    p.add_argument("--description", default="")
    p.add_argument("--default-tlp", default="amber", help="level of unmarked objects (default amber)")
    p.add_argument("--json", action="store_true")
    p = command(coll, "list", cmd_collection_list, "list collections")
    p.add_argument("--json", action="store_true")
