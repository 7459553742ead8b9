"""`exchange peer add|list|keys|remove`: partners whose own exchange we pull, every page verified."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from exchange.cli import store
from exchange.cli.common import CLI_ACTOR, command, group
from exchange.cli.feed import auth_from_args
from exchange.errors import BadRequestError

if TYPE_CHECKING:
    from exchange.config import Settings
    from exchange.feed.schemas import FeedAuth

TAXII_MEDIA = "application/taxii+json;version=2.1"


def _read(path: str, what: str) -> str:
    from pathlib import Path

    try:
        return Path(path).read_text()
    except OSError as exc:
        raise BadRequestError(f"cannot read {what} {path}: {exc.strerror}") from None


def _collection_urls(
    urls: list[str], *, auth: FeedAuth | None, ca_bundle: str | None, timeout: float
) -> list[str]:
    """Collection URLs as given; an API root URL stands for every collection it lets us read."""
    from exchange.feed.service import safe_url
    from exchange.intel.strictjson import loads_strict
    from feeds.http import HttpClient, HttpError

    found: list[str] = []
    for url in urls:
        url = url if url.endswith("/") else url + "/"
        if "/collections/" in url:
            found.append(url)
            continue
        with HttpClient(
            timeout=timeout, ca_bundle=ca_bundle, auth=auth.model_dump(exclude_none=True) if auth else None
        ) as http:
            try:
                response = http.get(url + "collections/", headers={"Accept": TAXII_MEDIA})
                listing = loads_strict(http.read_all(response))
            except (HttpError, ValueError) as exc:
                raise BadRequestError(f"cannot list the collections of {safe_url(url)}: {exc}") from None
        entries = listing.get("collections") if isinstance(listing, dict) else None
        readable = [
            f"{url}collections/{entry['id']}/"
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry.get("can_read")
        ]
        if not readable:
            raise BadRequestError(f"{safe_url(url)} lists no collection these credentials may read")
        found += readable
    return found


def cmd_peer_add(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.feed.service import safe_url
    from exchange.peer import keyset
    from exchange.peer import service as peer_service
    from feeds.sources import check_options as check

    our_name = args.our_name or settings.peer_name
    if not our_name:
        raise BadRequestError(
            "give --our-name (the partner slug the peer registered us under: the aud of its "
            "signatures), or set EXCHANGE_PEER_NAME"
        )
    if bool(args.jwks_url) == bool(args.jwks_file):
        raise BadRequestError("give the peer's key set with exactly one of --jwks-url or --jwks-file")
    ca = _read(args.ca_file, "the CA bundle") if args.ca_file else None
    auth = auth_from_args(args)
    if args.jwks_url:
        jwks = keyset.fetch(args.jwks_url, ca_bundle=ca, timeout=args.timeout)
    else:
        jwks = keyset.parse(_read(args.jwks_file, "the JWK Set").encode(), source=args.jwks_file)
    urls = _collection_urls(args.url, auth=auth, ca_bundle=ca, timeout=args.timeout)
    with store.session(settings) as db:
        peer, feeds = peer_service.create(
            db,
            slug=args.slug,
            collection_urls=urls,
            collection=args.collection,
            our_name=our_name,
            issuer=args.issuer,
            jwks_url=args.jwks_url,
            jwks=jwks,
            ca_bundle=ca,
            auth=auth,
            every=args.every,
            timeout=args.timeout,
            actor=CLI_ACTOR,
            check_options=check,
        )
        kids = sorted(peer_service.key_cache(peer).kids())
        names = [(f.name, safe_url(f.url)) for f in feeds]
    if args.json:
        print(json.dumps({"peer": args.slug, "kids": kids, "feeds": [n for n, _ in names]}))
        return 0
    print(f"peer {args.slug} added: pages must be signed for {our_name!r} by one of {len(kids)} key(s)")
    for name, url in names:
        print(f"  feed {name}: {url} -> {args.collection} (run it: exchange feed run {name})")
    return 0


def cmd_peer_list(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.peer import service as peer_service

    with store.session(settings) as db:
        data = [
            peer_service.view(peer, partner, peer_service.feeds_of(db, partner.slug))
            for peer, partner in peer_service.list_(db)
        ]
    if args.json:
        print(json.dumps(data))
        return 0
    if not data:
        print("no peers; add one with: exchange peer add SLUG --url URL --jwks-url URL --our-name NAME")
    for p in data:
        feeds = ", ".join(f"{f['name']} ({f['health']})" for f in p["feeds"]) or "no feeds"
        print(f"{p['slug']:20} aud {p['our_name']:16} keys {len(p['kids'])}  {feeds}")
    return 0


def cmd_peer_keys(args: argparse.Namespace, settings: Settings) -> int:
    """The kids trusted for a peer now; --refresh fetches its key set again first."""
    from exchange.peer import keyset
    from exchange.peer import service as peer_service
    from exchange.peer.trust import KeyCache

    with store.session(settings) as db:
        peer = peer_service.get_by_slug(db, args.slug)
        if args.refresh:
            if peer.jwks_url is None:
                raise BadRequestError(
                    f"peer {args.slug} was given its keys as a file; there is no URL to refresh from"
                )
            import time

            now = time.time()
            jwks = keyset.fetch(peer.jwks_url, ca_bundle=peer.ca_bundle)
            peer_service.save_keys(db, peer.pk, KeyCache(jwks=jwks, fetched_at=now, tried_at=now))
        kids = sorted(peer_service.key_cache(peer).kids())
    print(json.dumps({"peer": args.slug, "kids": kids}) if args.json else "\n".join(kids))
    return 0


def cmd_peer_remove(args: argparse.Namespace, settings: Settings) -> int:
    from exchange.peer import service as peer_service

    with store.session(settings) as db:
        names = peer_service.delete(db, args.slug, actor=CLI_ACTOR)
    print(
        f"peer {args.slug} removed with its feeds ({', '.join(names) or 'none'}); what they brought in stays"
    )
    return 0


def register(sub: Any) -> None:
    """Add the `peer` commands to the CLI."""
    peer = group(sub, "peer", "partners whose own exchange we pull, every page verified")
    p = command(
        peer, "add", cmd_peer_add, "make a partner a peer: its key set and a verifying feed per collection"
    )
    p.add_argument("slug", help="the partner's slug here")
    p.add_argument(
        "--url",
        action="append",
        required=True,
        help="a TAXII collection URL of the peer, or its API root (every collection we may read); repeatable",
    )
    p.add_argument("--jwks-url", help="https URL of the peer's JWK Set (its /.well-known/jwks.json)")
    p.add_argument("--jwks-file", help="the peer's JWK Set as a file (no refresh: rotation needs a new file)")
    p.add_argument(
        "--our-name",
        help="our partner slug at the peer: the aud it signs for us (default $EXCHANGE_PEER_NAME)",
    )
    p.add_argument(
        "--issuer", help="the peer exchange's STIX identity, its iss (default: the partner's identity)"
    )
    p.add_argument("--collection", default="partner-submissions", help="alias of the collection it fills")
    p.add_argument("--ca-file", help="PEM file of the CA that signs the peer's certificates")
    p.add_argument("--every", help='how often to pull, e.g. "15m" (default 1h)')
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the peer")
    p.add_argument("--username", help="HTTP Basic user name at the peer (our credential id there)")
    p.add_argument("--password-env", help="environment variable holding the password (our key at the peer)")
    p.add_argument(
        "--header-env", action="append", metavar="HEADER=VARIABLE", help="a header from the environment"
    )
    p.add_argument("--json", action="store_true")
    p = command(peer, "list", cmd_peer_list, "peers with their audience, trusted keys and feeds")
    p.add_argument("--json", action="store_true")
    p = command(peer, "keys", cmd_peer_keys, "the kids trusted for a peer (--refresh fetches its key set)")
    p.add_argument("slug")
    p.add_argument("--refresh", action="store_true")
    p.add_argument("--json", action="store_true")
    p = command(peer, "remove", cmd_peer_remove, "stop peering: drop its key set and its feeds")
    p.add_argument("slug")
