"""Objects pulled from a peer (origin `peer`) are under the peer's originator control like a
partner's submissions: never back to the peer, to others only as its relay_to says."""

from __future__ import annotations

import uuid

from exchange.agreement import service as agreement_service
from exchange.intel import service as intel_service
from exchange.intel.ingest import ingest
from exchange.intel.models import ObjectVersion
from exchange.intel.query import ObjectFilter
from exchange.partner import service as partner_service
from exchange.sharing import outbound
from tests.agreement.conftest import agreement_doc
from tests.sharing.stix import indicator


def _visible(db, partner, coll) -> set[str]:  # type: ignore[no-untyped-def]
    recipient = outbound.Recipient.for_partner(partner.pk, partner.slug, channel="export", requested_by="t")
    grant = outbound.access_for(db, recipient, coll)
    assert grant is not None
    page = outbound.next_page(
        db,
        grant=grant,
        collection=coll,
        flt=ObjectFilter(),
        after_us=None,
        limit=100,
        columns=(ObjectVersion.body,),
        recipient=recipient,
    )
    return {r.stix_id for r in page.rows}


def test_a_peers_objects_follow_its_relay_to(db, settings):
    root = intel_service.get_api_root(db, settings.api_root)
    coll = intel_service.create_collection(
        db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t", default_tlp="green"
    )
    made = {}
    for name in ("peer", "third"):
        slug = f"{name}-{uuid.uuid4().hex[:6]}"
        partner, _, _ = partner_service.create(db, slug=slug, name=slug, country="IN", actor="t")
        made[name] = partner
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    write = {"collections": [coll.alias]}
    for partner in made.values():
        agreement_service.apply(db, agreement_doc(partner.slug, read=read, write=write), actor="t")
    peer, third = made["peer"], made["third"]
    obj = indicator()
    result = ingest(
        db, collection=coll, objects=[obj], origin="peer", added_by="feed:peer", origin_partner_pk=peer.pk
    )
    assert result.created == 1
    row = db.query(ObjectVersion).filter(ObjectVersion.stix_id == obj["id"]).one()
    assert (row.origin, row.origin_partner_pk, row.originator_partner_pk) == ("peer", peer.pk, peer.pk)
    assert _visible(db, peer, coll) == set() and _visible(db, third, coll) == set()
    doc = agreement_doc(peer.slug, read=read, write=write | {"relay_to": [third.slug]})
    agreement_service.apply(db, doc, actor="t")
    assert _visible(db, third, coll) == {obj["id"]}
    assert _visible(db, peer, coll) == set()
