"""Published incidents as strict consumers read them: the OASIS validator, misp-stix (MISP)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.partners import agreement_doc
from tests.support.stix import SHA256, incident_body
from tests.support.strict import as_bundle, bundle_problems, to_misp
from tests.support.taxii import TAXII

pytestmark = pytest.mark.live


def _pull(live_server, coll, cred) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    response = httpx.get(
        live_server.collection_url(coll) + "objects/", auth=cred, headers={"Accept": TAXII}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json().get("objects", [])


@pytest.fixture
def received(live_server, partners):  # type: ignore[no-untyped-def]
    """An incident published by an analyst, as a partner allowed to read it receives it."""
    coll = live_server.collection()
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "amber"}))
    analyst = live_server.credential("analyst")
    published = httpx.post(
        f"{live_server.url}/api/v1/incidents",
        json=incident_body(coll.alias),
        headers={"Authorization": f"Bearer {analyst[1]}"},
    )
    assert published.status_code == 201, published.text
    return published.json(), _pull(live_server, coll, cred)


def test_a_published_incident_is_strictly_valid(received):  # type: ignore[no-untyped-def]
    _, objects = received
    assert bundle_problems(as_bundle(objects)) == []


def test_misp_gets_the_incident_as_an_event_with_its_indicators(received):  # type: ignore[no-untyped-def]
    _, objects = received
    [event] = to_misp(objects)
    body = incident_body("x")
    assert event.info == body["title"]
    assert [r.content for r in event.event_reports] == [body["description"]]
    tags = {t.name for t in event.tags}
    assert {"severity:high", "incident-type:phishing", "tlp:amber"} <= tags
    values = {(a.type, a.value) for a in event.attributes}
    assert {
        ("domain", "login-secure-bank.top"),
        ("ip-dst", "45.13.22.7"),
        ("sha256", SHA256),
        ("url", "http://x.top/a"),
    } <= values


def test_the_report_contains_the_incident_and_what_relates_to_it(received):  # type: ignore[no-untyped-def]
    # OpenCTI imports a report as a container of its object_refs; `related-to` is allowed
    # between any two types there, as in STIX.
    published, objects = received
    [report] = [o for o in objects if o["type"] == "report"]
    relationships = [o for o in objects if o["type"] == "relationship"]
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert {r["relationship_type"] for r in relationships} == {"related-to"}
    assert {(r["source_ref"], r["target_ref"]) for r in relationships} == {
        (i["id"], published["incident"]) for i in indicators
    }
    assert set(report["object_refs"]) == {
        published["incident"],
        *(o["id"] for o in indicators + relationships),
    }
    assert report["id"] in {o["id"] for o in published["objects"]}


def test_renaming_or_revoking_the_incident_carries_over_to_its_report(live_server, partners):  # type: ignore[no-untyped-def]
    coll = live_server.collection()
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "amber"}))
    analyst = {"Authorization": f"Bearer {live_server.credential('analyst')[1]}"}
    api = httpx.Client(base_url=live_server.url, headers=analyst, timeout=30)
    incident = api.post("/api/v1/incidents", json=incident_body(coll.alias)).json()["incident"]
    renamed = api.post(f"/api/v1/objects/{incident}/versions", json={"name": "Smishing wave"})
    assert renamed.status_code == 200, renamed.text
    [event] = to_misp(_pull(live_server, coll, cred))
    assert event.info == "Smishing wave"
    assert api.post(f"/api/v1/objects/{incident}/revoke").status_code == 200
    objects = _pull(live_server, coll, cred)
    assert {o["type"] for o in objects if o.get("revoked")} == {"incident", "report"}
    assert bundle_problems(as_bundle(objects)) == []


def test_a_new_version_or_revocation_keeps_the_incidents_audience(live_server, partners):  # type: ignore[no-untyped-def]
    coll = live_server.collection()
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    chosen, chosen_cred = partners.add(lambda s: agreement_doc(s, read=read))
    _, other_cred = partners.add(lambda s: agreement_doc(s, read=read))
    analyst = {"Authorization": f"Bearer {live_server.credential('analyst')[1]}"}
    api = httpx.Client(base_url=live_server.url, headers=analyst, timeout=30)
    published = api.post("/api/v1/incidents", json=incident_body(coll.alias, audience=[chosen])).json()
    report = next(o["id"] for o in published["objects"] if o["type"] == "report")
    assert api.post(f"/api/v1/objects/{published['incident']}/versions", json={"name": "Renamed"}).is_success
    assert api.post(f"/api/v1/objects/{published['incident']}/revoke").is_success
    seen = {o["id"]: o for o in _pull(live_server, coll, chosen_cred)}
    assert seen[published["incident"]]["revoked"] and seen[report]["revoked"]
    assert not {published["incident"], report} & {o["id"] for o in _pull(live_server, coll, other_cred)}
