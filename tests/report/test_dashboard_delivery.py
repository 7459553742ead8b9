"""The dashboard's figures and an incident's delivery status, after a real publish, pull by
taxii2-client, sighting, revocation and second pull."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support.partners import agreement_doc
from tests.support.taxii import TAXII, post, pull

pytestmark = pytest.mark.live


@pytest.fixture
def published(live_server, http, partners):  # type: ignore[no-untyped-def]
    """An incident with two observables in a fresh collection; a partner whose agreement ends in
    30 days pulled it; another partner may read it but pulled nothing."""
    coll = live_server.collection(default_tlp="amber")
    inbox = live_server.collection(default_tlp="amber")
    tag = uuid.uuid4().hex[:8]
    answer = http.post(
        f"{live_server.url}/api/v1/incidents",
        json={
            "title": f"phishing {tag}",
            "tlp": "green",
            "confidence": 80,
            "collection": coll.alias,
            "observables": [
                {"type": "domain-name", "value": f"login-{tag}.example"},
                {"type": "ipv4-addr", "value": f"203.0.113.{int(tag[:2], 16) % 250 + 1}"},
            ],
        },
    )
    assert answer.status_code == 201, answer.text
    incident = answer.json()
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    soon, soon_cred = partners.add(
        lambda s: agreement_doc(
            s, read=read, write={"collections": [inbox.alias], "types": ["sighting"]}, days_after=30
        )
    )
    idle, _ = partners.add(lambda s: agreement_doc(s, read=read, days_after=400))
    got = pull(live_server, soon_cred, coll)
    return {
        "coll": coll,
        "inbox": inbox,
        "incident": incident,
        "soon": (soon, soon_cred),
        "idle": idle,
        "pulled": {o["id"]: o for o in got},
    }


def _delivery(live_server, http, incident_id):  # type: ignore[no-untyped-def]
    answer = http.get(f"{live_server.url}/api/v1/incidents/{incident_id}/delivery")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _board(live_server, http):  # type: ignore[no-untyped-def]
    answer = http.get(f"{live_server.url}/api/v1/reports/dashboard", params={"days": 7})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_delivery_and_dashboard_follow_publish_pull_sighting_and_revocation(live_server, http, published):
    soon, soon_cred = published["soon"]
    incident_id = published["incident"]["incident"]
    stored = {o["id"]: o["type"] for o in published["incident"]["objects"]}
    members = {i for i, t in stored.items() if t in ("incident", "indicator", "relationship", "report")}
    assert members <= set(published["pulled"])  # what the partner really received

    delivery = _delivery(live_server, http, incident_id)
    objects = {o["stix_id"]: o for o in delivery["objects"]}
    assert set(objects) == members
    assert {o["tlp"] for o in objects.values()} == {"green"} and not any(
        o["revoked"] for o in objects.values()
    )
    received = {(r["partner"], r["stix_id"]) for r in delivery["receipts"]}
    assert received == {(soon, i) for i in members}  # the idle partner received nothing
    assert delivery["revocations_not_received"] == []

    indicator_id = next(i for i in members if i.startswith("indicator--"))
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": "2026-11-01T00:00:00.000Z",
        "modified": "2026-11-01T00:00:00.000Z",
        "sighting_of_ref": indicator_id,
        "count": 4,
    }
    with httpx.Client(auth=soon_cred, headers={"Accept": TAXII}, timeout=30) as client:
        status = post(client, live_server.collection_url(published["inbox"]), {"objects": [sighting]}).json()
        assert status["success_count"] == 1, status
    delivery = _delivery(live_server, http, incident_id)
    assert [(s["partner"], s["sighting_of"], s["count"]) for s in delivery["sightings"]] == [
        (soon, indicator_id, 4)
    ]

    board = {p["partner"]: p for p in _board(live_server, http)["partners"]}
    mine, idle = board[soon], board[published["idle"]]
    assert mine["agreement_expiring"] is True and 28 <= mine["agreement_days_left"] <= 31
    assert idle["agreement_expiring"] is False and idle["last_pull"] is None
    assert mine["last_pull"] is not None
    pulled_at = datetime.fromisoformat(mine["last_pull"])
    assert abs(pulled_at - datetime.now(UTC)) < timedelta(minutes=5)
    thirty = next(w for w in mine["windows"] if w["days"] == 30)
    assert thirty["received"] == len(published["pulled"]) and thirty["contributed"] == 1
    assert mine["revocations_not_received"] == 0

    revoked = http.post(f"{live_server.url}/api/v1/objects/{incident_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    delivery = _delivery(live_server, http, incident_id)
    missing = {(m["partner"], m["stix_id"]) for m in delivery["revocations_not_received"]}
    report_id = next(i for i in members if i.startswith("report--"))
    assert missing == {(soon, incident_id), (soon, report_id)}  # the report is revoked with it
    board = {p["partner"]: p for p in _board(live_server, http)["partners"]}
    assert board[soon]["revocations_not_received"] == 2
    assert {r["stix_id"] for r in board[soon]["revocations_sample"]} == {incident_id, report_id}
    assert board[published["idle"]]["revocations_not_received"] == 0  # it never had the incident

    again = {o["id"]: o for o in pull(live_server, soon_cred, published["coll"])}
    assert again[incident_id].get("revoked") is True
    assert _delivery(live_server, http, incident_id)["revocations_not_received"] == []
    board = {p["partner"]: p for p in _board(live_server, http)["partners"]}
    assert board[soon]["revocations_not_received"] == 0


def test_dashboard_feeds_and_objects_per_day(live_server, http, published):
    board = _board(live_server, http)
    days = board["added_per_day"]
    assert len(days) == 7 and days[-1]["day"] == datetime.now(UTC).date().isoformat()
    assert days[-1]["versions"] >= len(published["incident"]["objects"]) - 3  # shared objects may exist
    assert all(d["new_objects"] <= d["versions"] for d in days)
    for feed in board["feeds"]:
        assert "auth" not in feed and "url" not in feed  # no secrets, no credentials in URLs
    assert http.get(f"{live_server.url}/api/v1/reports/dashboard", params={"days": 0}).status_code == 422
    assert http.get(f"{live_server.url}/api/v1/reports/dashboard", params={"days": "x"}).status_code == 422


@pytest.mark.parametrize(
    ("incident_id", "status"),
    [
        ("indicator--6f1b2b52-0d0e-4d3c-9a9f-4b8c8f1e2d3a", 400),
        (f"incident--{uuid.UUID(int=0)}", 404),
        ("incident--' OR 1=1 --", 404),
        ("x" * 400, 400),
    ],
)
def test_delivery_of_what_is_not_an_incident(live_server, http, incident_id, status):
    answer = http.get(f"{live_server.url}/api/v1/incidents/{incident_id}/delivery")
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_only_staff_see_delivery(live_server, published):
    _, cred = published["soon"]
    path = f"{live_server.url}/api/v1/incidents/{published['incident']['incident']}/delivery"
    assert httpx.get(path, auth=cred).status_code == 403
    assert httpx.get(path).status_code == 401
    assert httpx.get(path, auth=live_server.credential("analyst")).status_code == 200
