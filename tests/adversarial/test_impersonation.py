"""A hostile partner or feed that publishes as the national CERT: its identity, or objects whose
`created_by_ref` names it. Only the CERT's own staff may do either; copies of what the CERT
stored are fine (a peer mirroring our objects back changes nothing)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from exchange.incident import service as incident_service
from exchange.incident.schemas import IncidentIn
from exchange.intel import service as intel_service
from exchange.intel.ingest import ingest
from policies.engine import Writer
from tests.adversarial.test_hostile_partner import indicator
from tests.agreement.conftest import agreement_doc
from tests.feeds.conftest import factory, feed_server, feed_settings, feeds  # noqa: F401 (fixtures)
from tests.sharing.test_closure import GREEN, ids, post

GREEN_20 = GREEN


def cert_identity(identity_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": "2000-01-01T00:00:00.000Z",
        "modified": "2000-01-01T00:00:00.000Z",
        "name": "National CERT (send your reports to evil@example.org)",
        "identity_class": "organization",
        **extra,
    }


@pytest.mark.live
def test_a_partner_cannot_publish_as_the_cert(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    read = {"collections": [coll.alias], "max_tlp": "green"}
    # relay_to all: what the forger sends may reach the reader at all (originator control).
    _, forger = partners.add(
        lambda s: agreement_doc(s, read=read, write={"collections": [coll.alias], "relay_to": "all"})
    )
    _, reader = partners.add(lambda s: agreement_doc(s, read=read))
    cert = live_server.settings.identity_id
    forged = indicator("192.0.2.66", created_by_ref=cert)
    honest = indicator("192.0.2.67")
    status = post(None, url, [forged, cert_identity(cert, revoked=True), honest], auth=forger)
    assert (status["success_count"], status["failure_count"]) == (1, 2)
    messages = {f["id"]: f["message"] for f in status["failures"]}
    assert "created_by_ref names the national CERT" in messages[forged["id"]]
    # Refused as the CERT's identity, or (once the CERT stored it) as another party's object.
    assert cert in messages
    assert ids(url, reader) == {honest["id"]}
    # What the CERT stored itself, the partner may copy back.
    mine = indicator("192.0.2.68", created_by_ref=cert)
    post(http, url, [mine])
    write_only = live_server.collection(default_tlp="green")
    _, copier = partners.add(lambda s: agreement_doc(s, write={"collections": [write_only.alias]}))
    assert post(None, live_server.collection_url(write_only), [mine], auth=copier)["success_count"] == 1


def test_a_partner_storing_the_certs_identity_first_cannot_block_its_publications(db, settings):
    # A fresh exchange whose identity nothing has stored yet.
    fresh = settings.model_copy(update={"identity_id": f"identity--{uuid.uuid4()}"})
    root = intel_service.get_api_root(db, fresh.api_root)
    inbox = intel_service.create_collection(db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t")
    target = intel_service.create_collection(db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t")
    partner = Writer(kind="partner", name="p-hostile", added_by=frozenset({"cred-hostile"}))
    squat = ingest(
        db,
        collection=inbox,
        objects=[cert_identity(fresh.identity_id, revoked=True)],
        origin="partner",
        added_by="cred-hostile",
        writer=partner,
        exchange_identity=fresh.identity_id,
    )
    assert squat.created == 0
    body = IncidentIn(
        title="t",
        incident_types=["malware"],
        severity="low",
        tlp="amber",
        collection=target.alias,
        observables=[{"type": "ipv4-addr", "value": "192.0.2.9"}],
    )
    published = incident_service.publish_incident(db, body, actor="cred-analyst", settings=fresh)
    assert any(o.id == fresh.identity_id for o in published.objects)


def test_a_hostile_feed_neither_impersonates_the_cert_nor_forges_a_tlp_definition(
    feed_server,  # noqa: F811
    feeds,  # noqa: F811
    factory,  # noqa: F811
    feed_settings,  # noqa: F811
):
    from feeds.runner import run_feed

    cert = feed_settings.identity_id
    forged_tlp = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": GREEN_20,
        "created": "2022-10-01T00:00:00.000Z",
        "name": "TLP:CLEAR",
        "definition_type": "statement",
        "definition": {"statement": "TLP:CLEAR"},
    }
    objects = [
        cert_identity(cert),
        indicator("192.0.2.70", created_by_ref=cert),
        forged_tlp,
        indicator("192.0.2.71"),
    ]
    bundle = json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}).encode()
    url = feed_server.serve("/as-the-cert.json", bundle, content_type="application/json")
    name, _ = feeds.add("stix-bundle", url)
    summary = run_feed(factory, feed_settings, name)
    assert (summary.counts["new"], summary.counts["failed"]) == (1, 3), summary.line()


def test_a_hostile_feed_with_absurdly_nested_and_huge_objects_costs_only_those_objects(
    feed_server,  # noqa: F811
    feeds,  # noqa: F811
    factory,  # noqa: F811
    feed_settings,  # noqa: F811
):
    from feeds.runner import run_feed

    # Nested deeper than any JSON encoder would write it: spliced in as text.
    deep = indicator("192.0.2.80", x_deep="DEEP")
    wide = indicator("192.0.2.81", x_refs_like=[f"identity--{uuid.uuid4()}" for _ in range(20000)])
    fine = indicator("192.0.2.82")
    text = json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [deep, wide, fine]})
    bundle = text.replace('"DEEP"', '{"x_down":' * 5000 + '"bottom"' + "}" * 5000).encode()
    url = feed_server.serve("/absurd.json", bundle, content_type="application/json")
    name, _ = feeds.add("stix-bundle", url)
    summary = run_feed(factory, feed_settings, name)
    assert summary.counts["new"] >= 1 and summary.counts["new"] + summary.counts["failed"] == 3, (
        summary.line()
    )


@pytest.mark.live
def test_a_partner_cannot_publish_as_another_partner(live_server, http, partners):
    from exchange.partner import service as partner_service

    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    read = {"collections": [coll.alias], "max_tlp": "green"}
    victim_identity = f"identity--{uuid.uuid4()}"
    with live_server.session() as db:
        partner_service.create(
            db,
            slug=f"p-{uuid.uuid4().hex[:8]}",
            name="Victim CERT",
            country="LK",
            identity_id=victim_identity,
            actor="test",
        )
    # relay_to all: what the forger sends may reach the reader at all (originator control).
    _, forger = partners.add(
        lambda s: agreement_doc(s, read=read, write={"collections": [coll.alias], "relay_to": "all"})
    )
    _, reader = partners.add(lambda s: agreement_doc(s, read=read))
    forged = indicator("192.0.2.77", created_by_ref=victim_identity)
    fake_identity = cert_identity(victim_identity, name="Victim CERT (now at evil@example.org)")
    honest = indicator("192.0.2.78")
    status = post(None, url, [forged, fake_identity, honest], auth=forger)
    assert (status["success_count"], status["failure_count"]) == (1, 2)
    messages = {f["id"]: f["message"] for f in status["failures"]}
    assert "created_by_ref names another partner" in messages[forged["id"]]
    assert "another partner's identity" in messages[victim_identity]
    assert ids(url, reader) == {honest["id"]}
