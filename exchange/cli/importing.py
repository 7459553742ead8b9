"""`exchange import FILE --peer SLUG`: store a peer's signed bundle export, once it verifies."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command

if TYPE_CHECKING:
    from exchange.config import Settings
    from exchange.peer.trust import PeerTrust


def _verified_bundle(path: str, trust: PeerTrust) -> dict[str, Any]:
    """The bundle in `path` once every signature on it (member, sidecar) verifies for the peer."""
    from pathlib import Path

    from exchange.errors import InvalidJsonError
    from exchange.intel.strictjson import loads_strict
    from exchange.signing.jws import CTY_STIX, SIGNATURE_MEMBER, canonical_bytes
    from exchange.signing.verify import MALFORMED_PAYLOAD, MALFORMED_TOKEN, NOT_SIGNED, SignatureError

    file = Path(path)
    raw = file.read_bytes()
    sidecar = file.with_name(file.name + ".jws")
    try:
        document = loads_strict(raw)
    except InvalidJsonError as exc:
        raise SignatureError(MALFORMED_PAYLOAD, f"not strict JSON: {exc.message[:200]}") from None
    if not isinstance(document, dict) or document.get("type") != "bundle":
        raise SignatureError(MALFORMED_PAYLOAD, "not a STIX bundle")
    tokens: list[Any] = []
    if SIGNATURE_MEMBER in document:
        tokens.append(document[SIGNATURE_MEMBER])
    if sidecar.is_file():
        tokens.append(sidecar.read_text(encoding="ascii", errors="replace").strip())
    if not tokens:
        raise SignatureError(NOT_SIGNED, f"no {SIGNATURE_MEMBER} member and no sidecar {sidecar.name}")
    content = canonical_bytes(document)
    for token in tokens:  # both must verify when both are there
        if not isinstance(token, str):
            raise SignatureError(MALFORMED_TOKEN, f"{SIGNATURE_MEMBER} is not a string")
        trust.verify_token(token, content, cty=CTY_STIX)
    return {k: v for k, v in document.items() if k != SIGNATURE_MEMBER}


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.audit import service as audit
    from exchange.errors import NotFoundError
    from exchange.intel.ingest import ingest
    from exchange.intel.service import get_api_root, get_collection
    from exchange.peer import service as peer_service
    from exchange.peer.trust import KeyCache
    from exchange.signing.verify import SignatureError

    refreshed: list[KeyCache] = []
    with store.session(settings) as db:
        trust = peer_service.trust_for(
            db,
            args.peer,
            save=refreshed.append,
            max_age=settings.peer_keys_max_age_seconds,
            refetch_every=settings.peer_keys_refetch_seconds,
        )
        peer_pk = peer_service.get_by_slug(db, args.peer).pk
    try:
        bundle = _verified_bundle(args.file, trust)
    except SignatureError as exc:
        print(f"FAILED: {exc.reason}; nothing was imported")
        if exc.detail:
            print(f"  {exc.detail}", file=sys.stderr)
        if refreshed:
            with store.session(settings) as db:
                peer_service.save_keys(db, peer_pk, refreshed[-1])
        return 1
    except OSError as exc:
        print(f"exchange: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    objects = bundle.get("objects", [])
    if not isinstance(objects, list):
        print("FAILED: the bundle's objects are not a list; nothing was imported")
        return 1
    with store.session(settings) as db:
        if refreshed:
            peer_service.save_keys(db, peer_pk, refreshed[-1])
        root = get_api_root(db, settings.api_root)
        if root is None:
            raise NotFoundError(f"no API root {settings.api_root!r}")
        collection = get_collection(db, api_root_pk=root.pk, ref=args.collection)
        assert collection is not None
        result = ingest(
            db,
            collection=collection,
            objects=objects,
            origin="peer",
            added_by=peer_service.added_by(args.peer),
            writer=peer_service.writer(db, args.peer),
            exchange_identity=settings.identity_id,
            origin_partner_pk=peer_service.get_by_slug(db, args.peer).partner_pk,
        )
        audit.record(
            db,
            actor=CLI_ACTOR,
            action="peer.import",
            target=args.peer,
            details={
                "collection": collection.alias,
                "new": result.created,
                "duplicates": result.duplicates,
                "failures": len(result.failures),
            },
        )
    summary = {
        "peer": args.peer,
        "collection": args.collection,
        "objects": len(objects),
        "new": result.created,
        "duplicates": result.duplicates,
        "failed": len(result.failures),
    }
    if args.json:
        print(json.dumps({**summary, "failures": result.failures[:20]}))
    else:
        print(
            f"OK: verified, signed by {args.peer} for us; {len(objects)} objects: {result.created} new, "
            f"{result.duplicates} already held, {len(result.failures)} refused"
        )
        for failure in result.failures[:5]:
            print(f"  {failure.get('id') or '-'}: {failure.get('message')}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = command(sub, "import", cmd_import, "store a peer's signed bundle export once its signature verifies")
    p.add_argument("file", help="the bundle (its FILE.jws sidecar, if any, is checked too)")
    p.add_argument("--peer", required=True, help="the peer that exported it")
    p.add_argument("--collection", default="partner-submissions", help="alias of the collection it fills")
    p.add_argument("--json", action="store_true")
