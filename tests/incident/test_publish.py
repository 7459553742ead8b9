"""Analyst publishing end to end: build, store, serve signed to the right partner, revoke."""

from __future__ import annotations

import uuid

import httpx
import pytest
import rfc8785
from sqlalchemy import func, select
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Collection as TaxiiCollection

from exchange.intel.models import ObjectVersion
from tests.signing import jwcrypto_verify
from tests.support.partners import agreement_doc
from tests.support.stix import SHA256, incident_body
from tests.support.taxii import TAXII

pytestmark = pytest.mark.live


@pytest.fixture
def api(live_server, admin):  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=30)


def count(live_server, coll) -> int:  # type: ignore[no-untyped-def]
    with live_server.session() as db:
        return db.scalar(select(func.count()).where(ObjectVersion.collection_pk == coll.pk))


def test_publish_serve_signed_revoke_and_recipients(live_server, api, partners):
    coll = live_server.collection()
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    allowed, allowed_cred = partners.add(lambda s: agreement_doc(s, read=read))
    _, green_only = partners.add(lambda s: agreement_doc(s, read={**read, "max_tlp": "green"}))
    analyst = live_server.credential("analyst")
    published = httpx.post(
        f"{live_server.url}/api/v1/incidents",
        json=incident_body(coll.alias),
        headers={"Authorization": f"Bearer {analyst[1]}"},
    )
    assert published.status_code == 201, published.text
    result = published.json()
    kinds = [o["type"] for o in result["objects"]]
    assert kinds.count("indicator") == 4 and kinds.count("relationship") == 4 and "incident" in kinds
    assert kinds.count("report") == 1  # the incident's report, for consumers that cannot read incidents
    jwks = httpx.get(f"{live_server.url}/.well-known/jwks.json").json()

    taxii = TaxiiCollection(live_server.collection_url(coll), user=allowed_cred[0], password=allowed_cred[1])
    envelope = taxii.get_objects()
    served = {o["id"]: o for o in envelope["objects"]}
    assert result["incident"] in served
    token = envelope.pop("x_exchange_jws")
    assert jwcrypto_verify(token, rfc8785.dumps(envelope), jwks)["aud"] == allowed
    patterns = sorted(o["pattern"] for o in served.values() if o["type"] == "indicator")
    assert "[domain-name:value = 'login-secure-bank.top']" in patterns
    assert f"[file:hashes.'SHA-256' = '{SHA256}']" in patterns
    for obj in served.values():  # everything the exchange built is clean STIX 2.1
        check = validate_instance(obj, ValidationOptions(version="2.1", strict=True))
        problems = [str(e) for e in check.errors + check.warnings]
        assert not problems, problems

    other = TaxiiCollection(live_server.collection_url(coll), user=green_only[0], password=green_only[1])
    assert result["incident"] not in {o["id"] for o in other.get_objects().get("objects", [])}

    last = taxii.get_objects()  # the partner's polling point
    mark = httpx.get(
        live_server.collection_url(coll) + "objects/", auth=allowed_cred, headers={"Accept": TAXII}
    ).headers["x-taxii-date-added-last"]
    revoked = api.post(f"/api/v1/objects/{result['incident']}/revoke")
    assert revoked.status_code == 200, revoked.text
    polled = taxii.get_objects(added_after=mark)["objects"]
    report = next(o["id"] for o in result["objects"] if o["type"] == "report")
    assert [(o["id"], o.get("revoked")) for o in polled] == [(result["incident"], True), (report, True)]
    assert last  # the earlier pull happened
    recipients = api.get(f"/api/v1/objects/{result['incident']}/recipients").json()
    versions = {(r["partner"], r["version"]) for r in recipients["received"]}
    assert len({v for p, v in versions if p == allowed}) == 2  # both versions reached the partner
    assert recipients["not_yet_received_latest"] == []


def test_republishing_the_same_observables_adds_no_indicator(live_server, api):
    coll = live_server.collection()
    first = api.post("/api/v1/incidents", json=incident_body(coll.alias)).json()
    before = count(live_server, coll)
    again = api.post("/api/v1/incidents", json=incident_body(coll.alias, id=first["incident"])).json()
    assert again["incident"] == first["incident"]
    assert count(live_server, coll) == before  # nothing changed, nothing new
    ids = {o["id"] for o in first["objects"] if o["type"] == "indicator"}
    assert ids == {o["id"] for o in again["objects"] if o["type"] == "indicator"}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"title": None}, "title"),
        ({"tlp": "purple"}, "TLP"),
        ({"observables": [{"type": "mac-addr", "value": "x"}]}, "unknown observable type"),
        ({"observables": [{"type": "ipv4-addr", "value": "999.1.1.1"}]}, "IPv4"),
        ({"observables": [{"type": "ipv4-addr", "value": "0.0.0.0/0"}]}, "wider than /8"),
        ({"observables": [{"type": "ipv6-addr", "value": "::/0"}]}, "wider than /16"),
        ({"observables": [{"type": "ipv4-addr", "value": "192.168.1.1"}]}, "192.168.0.0/16"),
        ({"observables": [{"type": "ipv4-addr", "value": "127.0.0.1"}]}, "loopback"),
        ({"observables": [{"type": "ipv6-addr", "value": "::127.0.0.1"}]}, "::/96"),
        ({"observables": [{"type": "ipv6-addr", "value": "2002:c0a8:101::"}]}, "2002::/16"),
        ({"observables": [{"type": "ipv4-addr", "value": "198.18.0.1"}]}, "198.18.0.0/15"),
        ({"observables": [{"type": "ipv6-addr", "value": "2001:db8::1%eth0"}]}, "scoped"),
        ({"observables": [{"type": "file:hashes.'MD5'", "value": "abc"}]}, "MD5"),
        ({"observables": [{"pattern": "[ipv4-addr:value = '1.2.3.4'"}]}, "pattern"),
        ({"audience": ["no-such-partner"]}, "no-such-partner"),
        ({"collection": "nope"}, "nope"),
        ({"last_seen": "2026-01-01T00:00:00Z"}, "last_seen"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_publish_requests_are_422_and_store_nothing(live_server, api, change, says):
    coll = live_server.collection()
    body = {k: v for k, v in {**incident_body(coll.alias), **change}.items() if v is not None}
    response = api.post("/api/v1/incidents", json=body)
    assert response.status_code == 422, response.text
    assert says.lower() in response.text.lower()
    assert count(live_server, coll) == 0


def test_partners_cannot_publish(live_server, partners):
    coll = live_server.collection()
    _, cred = partners.add(lambda s: agreement_doc(s, write={"collections": [coll.alias]}))
    response = httpx.post(
        f"{live_server.url}/api/v1/incidents",
        json=incident_body(coll.alias),
        headers={"Authorization": f"Bearer {cred[1]}"},
    )
    assert response.status_code == 403


def test_bundle_publish_keeps_good_objects_and_reports_bad(live_server, api):
    from tests.support.stix import indicator

    coll = live_server.collection()
    bundle = {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [indicator(1), dict(indicator(2), pattern="[broken")],
    }
    response = api.post("/api/v1/bundles", params={"collection": coll.alias}, json=bundle)
    assert response.status_code == 200, response.text
    assert (response.json()["success_count"], response.json()["failure_count"]) == (1, 1)
    assert count(live_server, coll) == 1
    dup = b'{"type": "bundle", "type": "bundle", "id": "bundle--1", "objects": []}'
    bad = api.post(
        "/api/v1/bundles",
        params={"collection": coll.alias},
        content=dup,
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and "type" in bad.text


def test_new_version_and_observable_lookup(live_server, api):
    coll = live_server.collection()
    published = api.post("/api/v1/incidents", json=incident_body(coll.alias)).json()
    changed = api.post(f"/api/v1/objects/{published['incident']}/versions", json={"name": "Renamed"})
    assert changed.status_code == 200, changed.text
    refused = api.post(f"/api/v1/objects/{published['incident']}/versions", json={"id": "x"})
    assert refused.status_code == 422
    seen = api.get("/api/v1/observables", params={"value": "LOGIN-secure-bank.top"}).json()
    assert seen["seen"] and seen["type"] == "domain-name"
    # Across collections: other tests publish the same observables elsewhere.
    assert [i["object"]["name"] for i in seen["incidents"] if i["collection"] == coll.alias] == ["Renamed"]
    assert any(i["collection"] == coll.alias for i in seen["indicators"])
    assert not api.get("/api/v1/observables", params={"value": "never-seen.example"}).json()["seen"]


def test_republishing_with_a_narrower_audience_applies_it(live_server, api, partners):
    coll = live_server.collection()
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    first, first_cred = partners.add(lambda s: agreement_doc(s, read=read))
    second, second_cred = partners.add(lambda s: agreement_doc(s, read=read))
    published = api.post("/api/v1/incidents", json=incident_body(coll.alias, audience=[first, second])).json()
    api.post("/api/v1/incidents", json=incident_body(coll.alias, id=published["incident"], audience=[first]))

    def ids(cred):
        return {
            o["id"]
            for o in httpx.get(
                live_server.collection_url(coll) + "objects/", auth=cred, headers={"Accept": TAXII}
            )
            .json()
            .get("objects", [])
        }

    assert published["incident"] in ids(first_cred)
    assert published["incident"] not in ids(second_cred)
