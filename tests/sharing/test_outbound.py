"""TAXII GET, export and push go through one pipeline: the same agreement gives the same bytes,
and the ledger records the partner each time, with the credential used and who asked."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import rfc8785
from sqlalchemy import select

from exchange.database.core import make_session_factory
from exchange.disclosure.models import Delivery, Disclosure
from exchange.export.service import export_bundle, signer
from exchange.partner import service as partner_service
from exchange.signing import KeyRing, default_directory, verify_detached
from feeds.delivery import push_partner
from tests.support.partners import agreement_doc
from tests.support.stix import TLP, indicator
from tests.support.taxii import TAXII

THIRD_PARTY = f"identity--{uuid.uuid4()}"


def _indicator(tlp: str | None, **extra: Any) -> dict[str, Any]:
    return indicator(marking=TLP[tlp] if tlp else None, **extra)


def test_taxii_export_and_push_serve_the_same_bytes_and_record_the_partner(
    live_server, partners, http, inbox
):
    coll = live_server.collection(default_tlp="amber")
    objs = [
        _indicator("green", x_internal_notes="analyst only", created_by_ref=THIRD_PARTY),
        _indicator("green", confidence=80),
        _indicator("amber"),  # above the agreement's ceiling
        _indicator(None),  # unmarked: the collection's amber
    ]
    status = http.post(
        live_server.collection_url(coll) + "objects/",
        content=orjson.dumps({"objects": objs}),
        headers={"Content-Type": TAXII},
    ).json()
    assert status["success_count"] == 4, status
    inbox_url = f"http://127.0.0.1:{inbox.server_address[1]}/taxii2/root/collections/inbox/"
    read = {
        "collections": [coll.alias],
        "max_tlp": "green",
        "redact": ["x_internal_notes"],
        "anonymize_source": True,
    }
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read=read) | {"push": {"url": inbox_url, "every": "1h"}}
    )

    # Push first (it sends only what the partner has not yet received), as the scheduler runs it.
    settings = live_server.settings
    keyring = KeyRing(default_directory(settings))
    summary = push_partner(make_session_factory(live_server.engine), settings, keyring, slug)
    assert summary.status == "ok", summary.line()
    assert len(inbox.bodies) == 1
    # TAXII GET, as the partner's own client does it.
    pulled = httpx.get(
        live_server.collection_url(coll) + "objects/", auth=cred, headers={"Accept": TAXII}
    ).json()
    # Export, as an analyst makes it for the partner.
    with live_server.session() as db:
        exported = export_bundle(
            db,
            partner_slug=slug,
            collection_ref=coll.alias,
            api_root=settings.api_root,
            actor="analyst-who-exported",
            exchange_identity=settings.identity_id,
            sign=signer(keyring, settings.identity_id),
        )

    def texts(envelope: dict[str, Any]) -> list[bytes]:
        return sorted(rfc8785.dumps(o) for o in envelope["objects"])

    bundle = orjson.loads(exported.bundle_bytes)
    pushed = orjson.loads(inbox.bodies[0])
    assert len(pulled["objects"]) == 2
    assert texts(pulled) == texts(bundle) == texts(pushed)
    served = {o["id"]: o for o in pulled["objects"]}
    assert "x_internal_notes" not in served[objs[0]["id"]]
    assert served[objs[0]["id"]]["created_by_ref"] == settings.identity_id
    # Each channel signs for the partner: aud names it, whatever the channel.
    jwks = keyring.jwks()
    for envelope in (pulled, bundle, pushed):
        assert verify_detached(envelope["x_exchange_jws"], envelope, jwks=jwks).header["aud"] == slug

    with live_server.session() as db:
        partner = partner_service.get_by_slug(db, slug)
        assert partner is not None
        rows = db.execute(
            select(Delivery.channel, Delivery.partner_pk, Delivery.credential_id, Delivery.requested_by)
            .join(Disclosure, Disclosure.delivery_pk == Delivery.pk)
            .where(Delivery.partner_pk == partner.pk)
            .distinct()
        ).all()
    assert sorted(rows) == sorted(
        [
            ("taxii", partner.pk, cred[0], cred[0]),
            ("export", partner.pk, None, "analyst-who-exported"),
            ("push", partner.pk, None, "scheduler"),
        ]
    )


def _one_green_indicator(live_server, http):  # type: ignore[no-untyped-def]
    """A new green collection holding one green indicator: the collection and the indicator."""
    coll = live_server.collection(default_tlp="green")
    obj = _indicator("green")
    http.post(
        live_server.collection_url(coll) + "objects/",
        content=orjson.dumps({"objects": [obj]}),
        headers={"Content-Type": TAXII},
    )
    return coll, obj


def test_recipients_endpoint_names_the_partner_for_an_export(live_server, partners, http, admin):
    coll, obj = _one_green_indicator(live_server, http)
    slug, _ = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))
    response = httpx.get(
        f"{live_server.url}/api/v1/exports/{coll.alias}",
        params={"partner": slug},
        headers={"Authorization": f"Bearer {admin[1]}"},
    )
    assert response.status_code == 200, response.text
    received = httpx.get(
        f"{live_server.url}/api/v1/objects/{obj['id']}/recipients",
        headers={"Authorization": f"Bearer {admin[1]}"},
    ).json()["received"]
    assert [(r["partner"], r["credential_id"], r["requested_by"], r["channel"]) for r in received] == [
        (slug, None, admin[0], "export")
    ]


def test_recipients_still_names_a_partner_after_the_version_it_received_is_deleted(
    live_server, partners, http, admin
):
    # The ledger finds rows through version pks (it has no index on the STIX id): a version
    # deleted over TAXII is kept in deleted_version, so who received it stays answerable.
    coll, obj = _one_green_indicator(live_server, http)
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    pulled = httpx.get(live_server.collection_url(coll) + "objects/", auth=cred, headers={"Accept": TAXII})
    assert [o["id"] for o in pulled.json()["objects"]] == [obj["id"]]
    deleted = http.delete(live_server.collection_url(coll) + f"objects/{obj['id']}/")
    assert deleted.status_code == 200, deleted.text
    gone = http.get(live_server.collection_url(coll) + f"objects/{obj['id']}/")
    assert gone.status_code == 404
    answer = httpx.get(
        f"{live_server.url}/api/v1/objects/{obj['id']}/recipients",
        headers={"Authorization": f"Bearer {admin[1]}"},
    ).json()
    assert answer["versions"] == []
    assert [(r["partner"], r["credential_id"], r["version"], r["channel"]) for r in answer["received"]] == [
        (slug, cred[0], obj["modified"], "taxii")
    ]
