"""Peers: add, list, remove; their cached key sets; the trust a pull or an import checks with.

A peer is a partner (with its agreement) whose own exchange we pull: one `taxii21` feed per
collection, each carrying the option `{"peer": <slug>}`, which makes the feed runner verify
every page with `trust_for` before anything of it is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.errors import BadRequestError, ConflictError, NotFoundError
from exchange.feed import service as feed_service
from exchange.feed.models import Feed
from exchange.feed.schemas import FeedAuth, FeedCreate
from exchange.partner import service as partner_service
from exchange.partner.models import Partner
from exchange.peer import keyset
from exchange.peer.models import Peer
from exchange.peer.trust import KeyCache, PeerTrust
from policies.engine import Writer

PEER_OPTION = "peer"
OUR_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
_IDENTITY = re.compile(r"^identity--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

OptionsCheck = Callable[[str, dict[str, Any]], dict[str, Any]]


def find_by_slug(db: Session, slug: str) -> Peer | None:
    """The peer for partner `slug`, if it is one."""
    return db.scalars(
        select(Peer).join(Partner, Partner.pk == Peer.partner_pk).where(Partner.slug == slug)
    ).first()


def get_by_slug(db: Session, slug: str) -> Peer:
    """The peer for partner `slug`, or NotFoundError."""
    peer = find_by_slug(db, slug)
    if peer is None:
        raise NotFoundError(f"partner {slug!r} is not a peer (add it with `exchange peer add`)")
    return peer


def list_(db: Session) -> list[tuple[Peer, Partner]]:
    """Every peer with its partner, by slug."""
    return [
        (peer, partner)
        for peer, partner in db.execute(
            select(Peer, Partner).join(Partner, Partner.pk == Peer.partner_pk).order_by(Partner.slug)
        ).tuples()
    ]


def feeds_of(db: Session, slug: str) -> list[Feed]:
    """The feeds that pull from peer `slug` (by their `peer` option)."""
    return [f for f in feed_service.list_(db) if feed_service.options(f).get(PEER_OPTION) == slug]


def _feed_name(db: Session, slug: str) -> str:
    taken = {f.name for f in feed_service.list_(db)}
    base = f"peer-{slug}"[:58]
    for n in range(1, 1000):
        if f"{base}-{n}" not in taken:
            return f"{base}-{n}"
    raise ConflictError(f"too many feeds for peer {slug!r}")


def create(
    db: Session,
    *,
    slug: str,
    collection_urls: list[str],
    collection: str,
    our_name: str,
    issuer: str | None,
    jwks_url: str | None,
    jwks: dict[str, Any],
    ca_bundle: str | None,
    auth: FeedAuth | None,
    every: str | None,
    timeout: float,
    actor: str,
    check_options: OptionsCheck | None,
) -> tuple[Peer, list[Feed]]:
    """Make partner `slug` a peer: its key set (vetted), and one verifying feed per collection URL."""
    partner = partner_service.get_by_slug(db, slug)
    if find_by_slug(db, slug) is not None:
        raise ConflictError(f"partner {slug!r} is already a peer (remove it first to change it)")
    if not OUR_NAME.match(our_name):
        raise BadRequestError(
            f"our name {our_name!r} (the slug the peer registered us under, its signatures' aud) "
            "must be 3-64 lowercase letters, digits or '-'"
        )
    issuer = issuer or partner.identity_id
    if not issuer:
        raise BadRequestError(
            f"partner {slug!r} has no STIX identity: give the peer exchange's identity with --issuer "
            "(its signatures' iss)"
        )
    if not _IDENTITY.match(issuer):
        raise BadRequestError(f"issuer {issuer!r} is not a STIX identity id")
    if not collection_urls:
        raise BadRequestError("a peer needs at least one TAXII collection URL to pull")
    if jwks_url is not None:
        jwks_url = keyset.check_url(jwks_url)
    vetted = keyset.vet(jwks, source="the peer's JWK Set")
    now = datetime.now(UTC)
    peer = Peer(
        partner_pk=partner.pk,
        our_name=our_name,
        issuer=issuer,
        jwks_url=jwks_url,
        ca_bundle=ca_bundle,
        jwks=json.dumps(vetted),
        jwks_fetched_at=now,
        jwks_tried_at=now,
        created_by=actor,
    )
    db.add(peer)
    db.flush()
    feeds = []
    for url in dict.fromkeys(collection_urls):
        feed_in = FeedCreate(
            name=_feed_name(db, slug),
            kind="taxii21",
            url=url,
            collection=collection,
            every=every,
            ca_bundle=ca_bundle,
            timeout=timeout,
            options={PEER_OPTION: slug},
            auth=auth,
        )
        feeds.append(feed_service.create(db, feed_in, actor=actor, check_options=check_options))
    audit.record(
        db,
        actor=actor,
        action="peer.create",
        target=slug,
        details={
            "our_name": our_name,
            "issuer": issuer,
            "jwks_url": jwks_url,
            "kids": sorted(KeyCache(vetted).kids()),
            "feeds": [f.name for f in feeds],
        },
    )
    return peer, feeds


def delete(db: Session, slug: str, *, actor: str) -> list[str]:
    """Stop peering with `slug`: its key set and its feeds go (what they brought in stays)."""
    peer = get_by_slug(db, slug)
    names = [f.name for f in feeds_of(db, slug)]
    for name in names:
        feed_service.delete(db, name, actor=actor)
    db.delete(peer)
    db.flush()
    audit.record(db, actor=actor, action="peer.delete", target=slug, details={"feeds": names})
    return names


def key_cache(peer: Peer) -> KeyCache:
    """The peer's cached key set."""
    return KeyCache(
        jwks=json.loads(peer.jwks),
        fetched_at=peer.jwks_fetched_at.timestamp() if peer.jwks_fetched_at else None,
        tried_at=peer.jwks_tried_at.timestamp() if peer.jwks_tried_at else None,
    )


def save_keys(db: Session, peer_pk: int, cache: KeyCache) -> None:
    """Keep a refreshed key set (or only the time of a failed attempt)."""
    peer = db.get(Peer, peer_pk)
    if peer is None:
        return
    old = key_cache(peer).kids()
    peer.jwks = json.dumps(cache.jwks)
    if cache.fetched_at is not None:
        peer.jwks_fetched_at = datetime.fromtimestamp(cache.fetched_at, UTC)
    if cache.tried_at is not None:
        peer.jwks_tried_at = datetime.fromtimestamp(cache.tried_at, UTC)
    new = cache.kids()
    if new != old:
        partner = db.get(Partner, peer.partner_pk)
        audit.record(
            db,
            actor="peer-keys",
            action="peer.keys.change",
            target=partner.slug if partner else str(peer.partner_pk),
            details={"added": sorted(new - old), "removed": sorted(old - new)},
        )
    db.flush()


def trust_for(
    db: Session,
    slug: str,
    *,
    save: Callable[[KeyCache], None] | None,
    max_age: float,
    refetch_every: float,
    timeout: float = 5.0,
) -> PeerTrust:
    """The trust that checks what peer `slug` signs for us (refreshing its key set over TLS)."""
    peer = get_by_slug(db, slug)
    partner = db.get(Partner, peer.partner_pk)
    if partner is None or partner.status != "active":
        raise BadRequestError(f"partner {slug!r} is suspended: nothing of it is accepted")
    url, ca = peer.jwks_url, peer.ca_bundle

    def fetch() -> dict[str, Any]:
        assert url is not None
        return keyset.fetch(url, ca_bundle=ca, timeout=timeout)

    return PeerTrust(
        slug=slug,
        audience=peer.our_name,
        issuer=peer.issuer,
        cache=key_cache(peer),
        fetch=fetch if url is not None else None,
        save=save,
        max_age=max_age,
        refetch_every=refetch_every,
    )


def added_by(slug: str) -> str:
    """What the store records as `added_by` for objects that came from peer `slug`."""
    return f"peer:{slug}"


def writer(db: Session, slug: str) -> Writer:
    """The peer as the writer of what it sends: its partner identity and credentials, and `peer:<slug>`."""
    base = partner_service.writer(db, partner_service.get_by_slug(db, slug))
    return Writer(
        kind="partner", name=base.name, identity=base.identity, added_by=base.added_by | {added_by(slug)}
    )


def cached_trust(db: Session, peer: Peer) -> PeerTrust:
    """The peer's trust on its cached key set alone (no fetching: for checks inside a request)."""
    partner = db.get(Partner, peer.partner_pk)
    return PeerTrust(
        slug=partner.slug if partner is not None else str(peer.partner_pk),
        audience=peer.our_name,
        issuer=peer.issuer,
        cache=key_cache(peer),
        fetch=None,
    )


def view(peer: Peer, partner: Partner, feeds: list[Feed]) -> dict[str, Any]:
    """What `peer list` shows: no secrets, the kids trusted now."""
    cache = key_cache(peer)
    return {
        "slug": partner.slug,
        "status": partner.status,
        "our_name": peer.our_name,
        "issuer": peer.issuer,
        "jwks_url": peer.jwks_url,
        "kids": sorted(cache.kids()),
        "keys_fetched_at": peer.jwks_fetched_at.isoformat() if peer.jwks_fetched_at else None,
        "feeds": [{"name": f.name, "url": feed_service.safe_url(f.url), "health": f.health} for f in feeds],
    }
