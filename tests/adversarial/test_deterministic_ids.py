"""A hostile partner against the exchange's own ids: the ids the CERT derives for what it
publishes must be neither guessable (a partner posting a guessed id would learn what the CERT
holds) nor squattable (a partner storing one first would own, or revoke, the CERT's object)."""

from __future__ import annotations

import hashlib
import json
import uuid

import httpx
import pytest

from tests.support.partners import agreement_doc
from tests.support.stix import RED, indicator_on
from tests.support.taxii import TAXII, submit

pytestmark = pytest.mark.live


def public_formula_id(stix_type: str, *parts: str) -> str:
    """What anyone reading the exchange's source computes for a 'deterministic' id."""
    digest = hashlib.sha256("\x1f".join(("national-cert-exchange", stix_type, *parts)).encode()).digest()
    return f"{stix_type}--{uuid.UUID(bytes=digest[:16], version=4)}"


ANALYST_BODY = {
    "title": "C2 seen",
    "incident_types": ["malware"],
    "severity": "high",
    "first_seen": "2026-11-20T08:00:00Z",
    "tlp": "red",
    "collection": "incidents",
    "confidence": 80,
}


def publish(live_server, analyst, ip: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        f"{live_server.url}/api/v1/incidents",
        headers={"Authorization": f"Bearer {analyst[1]}"},
        json=ANALYST_BODY | {"observables": [{"type": "ipv4-addr", "value": ip}]},
        timeout=30,
    )


def test_a_partner_cannot_squat_the_id_the_cert_will_publish_an_observable_under(live_server, partners):
    inbox = live_server.collection(default_tlp="green")
    _, cred = partners.add(lambda s: agreement_doc(s, write={"collections": [inbox.alias]}))
    ip = f"203.0.113.{uuid.uuid4().int % 200 + 1}"
    guess = public_formula_id("indicator", f"[ipv4-addr:value = '{ip}']")
    squat = indicator_on(ip, revoked=True) | {"id": guess}
    submit(None, live_server.collection_url(inbox), [squat], auth=cred)

    analyst = live_server.credential("analyst")
    published = publish(live_server, analyst, ip)
    assert published.status_code == 201, published.text
    # The CERT's indicator is its own: the partner can neither revoke nor rename it.
    mine = next(o for o in published.json()["objects"] if o["type"] == "indicator")
    change = indicator_on(ip, revoked=True) | {"id": mine["id"], "modified": "2099-01-01T00:00:00.000Z"}
    status = submit(None, live_server.collection_url(inbox), [change], auth=cred)
    assert status["failure_count"] == 1


def test_a_partners_write_does_not_tell_it_whether_the_cert_holds_an_indicator(live_server, partners):
    inbox = live_server.collection(default_tlp="green")
    _, cred = partners.add(lambda s: agreement_doc(s, write={"collections": [inbox.alias]}))
    held, unknown = (f"45.18.{uuid.uuid4().int % 250}.{n}" for n in (1, 2))
    analyst = live_server.credential("analyst")
    assert publish(live_server, analyst, held).status_code == 201

    answers = []
    for ip in (held, unknown):
        guess = public_formula_id("indicator", f"[ipv4-addr:value = '{ip}']")
        status = submit(
            None, live_server.collection_url(inbox), [indicator_on(ip) | {"id": guess}], auth=cred
        )
        answers.append((status["success_count"], status["failure_count"]))
    assert answers[0] == answers[1] == (1, 0)


def sco(value: str, **extra: object) -> dict[str, object]:
    # STIX 2.1's own rule: an SCO's id is a UUIDv5 of its value, the same for everyone.
    return {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": f"ipv4-addr--{uuid.uuid5(uuid.UUID('00abedb4-aa42-466c-9c01-fed23315a9b7'), json.dumps({'value': value}))}",
        "value": value,
        **extra,
    }


def test_a_partner_posting_an_sco_does_not_learn_whether_the_cert_holds_it(live_server, http, partners):
    # SCOs are not versioned objects, so any source may store the value it saw: no oracle. Another
    # partner's copy then resolves references to that id for third partners who may read it,
    # which is what referential closure asks (the id names an object they may see).
    cert = live_server.collection(default_tlp="amber")
    inbox = live_server.collection(default_tlp="green")
    _, cred = partners.add(lambda s: agreement_doc(s, write={"collections": [inbox.alias]}))
    held, unknown = (f"198.19.{uuid.uuid4().int % 250}.{n}" for n in (1, 2))
    submit(http, live_server.collection_url(cert), [sco(held, object_marking_refs=[RED])])
    answers = []
    for value in (held, unknown):
        status = submit(None, live_server.collection_url(inbox), [sco(value)], auth=cred)
        answers.append((status["success_count"], status["failure_count"]))
    assert answers[0] == answers[1] == (1, 0)


def test_a_partner_cannot_squat_the_id_a_feed_will_store_a_value_under(
    feed_server,
    feeds,
    factory,
    feed_settings,
):
    from exchange.database.core import session_scope
    from exchange.intel.ingest import ingest
    from exchange.intel.models import Collection
    from feeds.runner import run_feed

    ip = f"203.0.113.{uuid.uuid4().int % 200 + 1}"
    url = feed_server.serve("/list.txt", f"{ip}\n".encode(), content_type="text/plain")
    # Served objects carry the feed's name (x_exchange_feed), so a partner knows it.
    name, coll = feeds.add("text", url, tlp="green")
    guess = public_formula_id("indicator", "feed", name, f"[ipv4-addr:value = '{ip}']")
    with session_scope(factory, write=True) as db:
        squatted = ingest(
            db,
            collection=db.get(Collection, coll.pk),
            objects=[indicator_on(ip, revoked=True) | {"id": guess}],
            origin="partner",
            added_by="cred-squatter",
        )
        assert squatted.created == 1
    summary = run_feed(factory, feed_settings, name)
    assert (summary.counts["new"], summary.counts["failed"]) == (1, 0), summary.line()


def _incident_from_elsewhere(live_server, http) -> tuple[dict[str, object], object]:  # type: ignore[no-untyped-def]
    """An incident stored with no report yet (it came in over TAXII), in a fresh collection."""
    coll = live_server.collection(default_tlp="green")
    incident = {
        "type": "incident",
        "spec_version": "2.1",
        "id": f"incident--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "came in over TAXII",
        "created_by_ref": live_server.settings.identity_id,
    }
    submit(http, live_server.collection_url(coll), [incident])
    return incident, coll


def _squat_report(report_id: str, incident_id: str, **extra: object) -> dict[str, object]:
    return {
        "type": "report",
        "spec_version": "2.1",
        "id": report_id,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "placeholder",
        "published": "2026-01-01T00:00:00.000Z",
        "object_refs": [incident_id],
        **extra,
    }


@pytest.mark.parametrize("revoked", [True, False], ids=["revoked", "placeholder"])
def test_a_partner_cannot_squat_the_report_or_relationships_of_an_incident(
    live_server, http, partners, revoked
):
    incident, coll = _incident_from_elsewhere(live_server, http)
    inbox = live_server.collection(default_tlp="green")
    _, cred = partners.add(lambda s: agreement_doc(s, write={"collections": [inbox.alias]}))
    guess = public_formula_id("report", str(incident["id"]))
    squat = _squat_report(guess, str(incident["id"]), **({"revoked": True} if revoked else {}))
    assert submit(None, live_server.collection_url(inbox), [squat], auth=cred)["success_count"] == 1

    analyst = live_server.credential("analyst")
    published = httpx.post(
        f"{live_server.url}/api/v1/incidents",
        headers={"Authorization": f"Bearer {analyst[1]}"},
        json=ANALYST_BODY
        | {
            "collection": coll.alias,
            "id": incident["id"],
            "observables": [{"type": "ipv4-addr", "value": "192.0.2.77"}],
        },
        timeout=30,
    )
    assert published.status_code == 201, published.text
    objects = {o["type"]: o["id"] for o in published.json()["objects"]}
    assert objects["report"] != guess
    formula = public_formula_id("relationship", objects["indicator"], "related-to", str(incident["id"]))
    assert objects["relationship"] != formula
    shown = httpx.get(
        f"{live_server.url}/api/v1/objects/{objects['report']}",
        headers={"Authorization": f"Bearer {analyst[1]}"},
        timeout=30,
    ).json()
    assert shown["came_from"]["origin"] == "analyst", shown["came_from"]


def test_an_incident_published_under_the_unkeyed_ids_keeps_its_report_and_relationships(live_server, http):
    # Published before report and relationship ids were keyed: republishing and new versions
    # update that report and those relationships instead of starting second ones.
    from exchange.intel.ids import deterministic_id, id_key

    incident, coll = _incident_from_elsewhere(live_server, http)
    ip = "192.0.2.78"
    pattern = f"[ipv4-addr:value = '{ip}']"
    indicator = indicator_on(ip) | {
        "id": deterministic_id("indicator", pattern, key=id_key(live_server.settings.resolved_secret())),
        "pattern": pattern,
        "created_by_ref": live_server.settings.identity_id,
    }
    old_rel = public_formula_id("relationship", indicator["id"], "related-to", str(incident["id"]))
    relationship = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": old_rel,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "relationship_type": "related-to",
        "source_ref": indicator["id"],
        "target_ref": incident["id"],
        "created_by_ref": live_server.settings.identity_id,
    }
    old_report = public_formula_id("report", str(incident["id"]))
    report = _squat_report(
        old_report,
        str(incident["id"]),
        name="came in over TAXII",
        object_refs=[incident["id"], indicator["id"], old_rel],
        created_by_ref=live_server.settings.identity_id,
    )
    submit(http, live_server.collection_url(coll), [indicator, relationship, report])

    analyst = live_server.credential("analyst")
    auth = {"Authorization": f"Bearer {analyst[1]}"}
    published = httpx.post(
        f"{live_server.url}/api/v1/incidents",
        headers=auth,
        json=ANALYST_BODY
        | {
            "collection": coll.alias,
            "id": incident["id"],
            "observables": [{"type": "ipv4-addr", "value": ip}],
        },
        timeout=30,
    )
    assert published.status_code == 201, published.text
    objects = {o["type"]: o["id"] for o in published.json()["objects"]}
    assert (objects["report"], objects["relationship"]) == (old_report, old_rel)
    renamed = httpx.post(
        f"{live_server.url}/api/v1/objects/{incident['id']}/versions",
        headers=auth,
        json={"name": "Renamed"},
        timeout=30,
    )
    assert renamed.status_code == 200, renamed.text
    with httpx.Client(auth=analyst, headers={"Accept": TAXII}, timeout=30) as client:
        served = client.get(
            live_server.collection_url(coll) + "objects/", params={"match[type]": "report,relationship"}
        )
    latest = {o["id"]: o for o in served.json()["objects"]}
    assert set(latest) == {old_report, old_rel}
    assert latest[old_report]["name"] == "Renamed"
