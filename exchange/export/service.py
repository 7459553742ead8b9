"""Bundle exports for one partner, exactly as its agreement allows, signed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from exchange.audit import service as audit
from exchange.errors import NotFoundError
from exchange.intel import query
from exchange.intel.models import ObjectVersion
from exchange.intel.query import AnyRow
from exchange.intel.service import get_api_root, get_collection
from exchange.partner import service as partner_service
from exchange.sharing import outbound
from exchange.signing import CTY_STIX, KeyRing, attach_signature, canonical_envelope, sign_canonical

PAGE = 1000


@dataclass
class Export:
    bundle_bytes: bytes  # RFC 8785 canonical bundle, with the signature member when signed
    signature: str | None
    count: int
    # The same bundle without the signature member (what the signature covers): strictly valid
    # STIX, for consumers that refuse custom bundle properties; the signature goes beside it.
    unsigned_bytes: bytes = b""


def export_bundle(
    db: Session,
    *,
    partner_slug: str,
    collection_ref: str,
    api_root: str,
    actor: str,
    exchange_identity: str,
    added_after_us: int | None = None,
    sign: Callable[[bytes, str], str] | None = None,
) -> Export:
    """All objects (latest versions) of a collection that `partner_slug` may receive now."""
    partner = partner_service.get_by_slug(db, partner_slug)
    assert partner is not None
    root = get_api_root(db, api_root)
    if root is None:
        raise NotFoundError(f"no API root {api_root!r}")
    collection = get_collection(db, api_root_pk=root.pk, ref=collection_ref)
    assert collection is not None
    recipient = outbound.Recipient.for_partner(partner.pk, partner.slug, channel="export", requested_by=actor)
    grant = outbound.access_for(db, recipient, collection)
    if grant is None or not grant.can_read:  # the grant folds in the partner's status
        raise NotFoundError(f"partner {partner_slug!r} may not read {collection.alias!r} now")
    flt = query.ObjectFilter(added_after_us=added_after_us)
    bodies: list[str] = []
    served: list[AnyRow] = []
    seen: set[int] = set()
    after = None
    while True:
        page = outbound.next_page(
            db,
            grant=grant,
            collection=collection,
            flt=flt,
            after_us=after,
            limit=PAGE,
            columns=(ObjectVersion.body,),
            recipient=recipient,
        )
        # A version stored and later released again comes once (the ledger is written at the end).
        fresh = [r for r in page.rows if r.pk not in seen]
        seen.update(r.pk for r in fresh)
        bodies.extend(outbound.bodies(fresh, grant, exchange_identity=exchange_identity))
        served.extend(fresh)
        if not page.more:
            break
        after = page.next_after
    bundle_id = f"bundle--{uuid.uuid4()}"
    canonical = canonical_envelope({"id": bundle_id, "type": "bundle"}, bodies)
    signature = sign(canonical, partner.slug) if sign else None
    outbound.record(db, recipient, collection_pk=collection.pk, rows=served)
    audit.record(
        db,
        actor=actor,
        action="export",
        target=partner.slug,
        details={"collection": collection.alias, "objects": len(bodies)},
    )
    if signature is None:
        return Export(canonical, None, len(bodies), canonical)
    return Export(attach_signature(canonical, signature), signature, len(bodies), canonical)


def signer(keyring: KeyRing, issuer: str) -> Callable[[bytes, str], str]:
    """Sign canonical bundle bytes for one partner (the JWS `aud`)."""

    def sign(canonical: bytes, audience: str) -> str:
        return sign_canonical(canonical, key=keyring.current(), cty=CTY_STIX, aud=audience, iss=issuer)

    return sign
