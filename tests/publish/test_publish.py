"""Analyst publishing over a live server: incidents, bundles, revocation, versions, lookups."""
from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from stix2validator import ValidationOptions, validate_instance

from exchange.intel.models import ObjectVersion
from exchange.publish.service import FIRST_SEEN, INCIDENT_CORE, LAST_SEEN
from policies.tlp import TLP_2_0
from tests.agreement.conftest import partners  # noqa: F401 (fixture)
from tests.publish.conftest import stored_rows
from tests.stixgen import indicator
from tests.taxii_server.conftest import TAXII

pytestmark = pytest.mark.live


def observables() -> dict[str, str]:
    """Values no other test publishes (indicator ids are global, derived from the pattern)."""
    tag = secrets.token_hex(4)
    return {"domain": f"login-{tag}.top", "ip": f"45.{int(tag[:2], 16)}.{int(tag[2:4], 16)}.7",
            "sha256": secrets.token_hex(32), "url_host": f"x-{tag}.top", "url": f"http://x-{tag}.top/a"}


def incident_body(coll_alias: str, values: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "title": "Phishing wave against bank customers", "description": "Credential phishing by SMS and mail.",
        "incident_types": ["phishing"], "severity": "high",
        "first_seen": "2026-11-20T08:00:00Z", "last_seen": "2026-11-21T09:30:00.250+01:00",
        "tlp": "amber", "confidence": 80, "collection": coll_alias,
        "observables": [
            {"type": "domain-name", "value": values["domain"].upper() + "."},
            {"type": "ipv4-addr", "value": values["ip"]},
            {"type": "file:hashes.'SHA-256'", "value": values["sha256"].upper()},
            {"pattern": f"[url:value = '{values['url']}']", "name": "landing page"},
        ],
        **extra,
    }


def taxii_objects(url: str, admin: tuple[str, str], **params: str) -> list[dict[str, Any]]:
    response = httpx.get(url, auth=admin, headers={"Accept": TAXII}, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json().get("objects", [])


def by_type(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for obj in result["objects"]:
        kinds.setdefault(obj["type"], []).append(obj)
    return kinds


def total_rows(server) -> int:  # type: ignore[no-untyped-def]
    with server.session() as db:
        return db.scalar(select(func.count()).select_from(ObjectVersion))


def test_analyst_publishes_an_incident_that_is_served_over_taxii(publish_server, analyst, api, admin, coll,
                                                                  partners):  # noqa: F811
    slug, _ = partners.add()
    values = observables()
    response = analyst.post("/api/v1/incidents", json=incident_body(coll.alias, values, audience=[slug]))
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["collection"] == coll.alias and result["collection_id"] == coll.id
    kinds = by_type(result)
    assert {k: len(v) for k, v in kinds.items()} == {
        "marking-definition": 2, "identity": 1, "extension-definition": 1, "incident": 1,
        "indicator": 4, "relationship": 4}
    assert [i["id"] for i in kinds["incident"]] == [result["incident"]]

    served = {}
    for obj in result["objects"]:
        assert obj["url"] == (f"{publish_server.url}/taxii2/{publish_server.settings.api_root}/collections/"
                              f"{coll.id}/objects/{obj['id']}/")
        [served[obj["id"]]] = taxii_objects(obj["url"], admin)
    incident = served[result["incident"]]
    identity = publish_server.settings.identity_id
    assert incident["name"] == "Phishing wave against bank customers"
    assert incident["created_by_ref"] == identity and served[identity]["name"] == publish_server.settings.identity_name
    assert incident["object_marking_refs"] == [TLP_2_0["amber"]["id"]] and incident["confidence"] == 80
    assert incident["extensions"][INCIDENT_CORE] == {
        "extension_type": "property-extension", "determination": "suspected", "investigation_status": "open",
        "incident_types": ["phishing"], "criticality": 70}
    assert incident[FIRST_SEEN] == "2026-11-20T08:00:00.000Z" and incident[LAST_SEEN] == "2026-11-21T08:30:00.250Z"
    assert served[TLP_2_0["amber"]["id"]] == TLP_2_0["amber"]

    patterns = {served[i["id"]]["pattern"] for i in kinds["indicator"]}
    assert patterns == {
        f"[domain-name:value = '{values['domain']}']", f"[ipv4-addr:value = '{values['ip']}']",
        f"[file:hashes.'SHA-256' = '{values['sha256']}']", f"[url:value = '{values['url']}']"}
    links = {(served[r["id"]]["source_ref"], served[r["id"]]["target_ref"]) for r in kinds["relationship"]}
    assert links == {(i["id"], result["incident"]) for i in kinds["indicator"]}

    with publish_server.session() as db:
        audiences = dict(db.execute(select(ObjectVersion.stix_id, ObjectVersion.audience)
                                    .where(ObjectVersion.collection_pk == coll.pk)).all())
    assert audiences[result["incident"]] == f",{slug}," and audiences[identity] is None
    events = api.get("/api/v1/audit", params={"action": "publish.incident", "limit": 5}).json()
    assert any(e["target"] == result["incident"] and e["details"]["collection"] == coll.alias for e in events)


def test_everything_the_exchange_produces_passes_strict_validation(publish_server, api, admin, coll):
    response = api.post("/api/v1/incidents", json=incident_body(coll.alias, observables()))
    assert response.status_code == 201, response.text
    objects = taxii_objects(publish_server.collection_url(coll) + "objects/", admin)
    assert len(objects) == len(response.json()["objects"]) == 13
    options = ValidationOptions(version="2.1", strict=True)
    for obj in objects:
        outcome = validate_instance(obj, options)
        assert outcome.is_valid and not outcome.warnings, (obj["id"], [str(e) for e in outcome.errors])
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    assert validate_instance(bundle, options).is_valid


def test_republishing_the_same_observables_updates_instead_of_duplicating(publish_server, api, coll,
                                                                           partners):  # noqa: F811
    values = observables()
    first = api.post("/api/v1/incidents", json=incident_body(coll.alias, values)).json()
    again = incident_body(coll.alias, values, title="Second wave")
    again["observables"][0]["value"] = values["domain"]  # written differently, same normalised value
    second = api.post("/api/v1/incidents", json=again).json()

    first_ind, second_ind = (sorted((o["id"], o["version"], o["status"]) for o in by_type(r)["indicator"])
                             for r in (first, second))
    assert [i[:2] for i in first_ind] == [i[:2] for i in second_ind]
    assert {i[2] for i in second_ind} == {"unchanged"} and second["incident"] != first["incident"]
    with publish_server.session() as db:
        rows = db.execute(select(ObjectVersion.type, func.count(), func.count(ObjectVersion.stix_id.distinct()))
                          .where(ObjectVersion.collection_pk == coll.pk).group_by(ObjectVersion.type)).all()
    counts = {kind: (n, distinct) for kind, n, distinct in rows}
    assert counts["indicator"] == (4, 4) and counts["incident"] == (2, 2) and counts["relationship"] == (8, 8)

    # Changed content (confidence) is a new version of the same indicators, first dates kept.
    third = api.post("/api/v1/incidents", json=incident_body(coll.alias, values, confidence=95)).json()
    third_ind = sorted((o["id"], o["version"], o["status"]) for o in by_type(third)["indicator"])
    assert [i[0] for i in third_ind] == [i[0] for i in first_ind]
    assert all(new[2] == "new" and new[1] > old[1] for new, old in zip(third_ind, first_ind))
    with publish_server.session() as db:
        latest = [orjson.loads(b) for b in db.scalars(select(ObjectVersion.body).where(
            ObjectVersion.collection_pk == coll.pk, ObjectVersion.type == "indicator",
            ObjectVersion.is_latest.is_(True)))]
    assert {o["confidence"] for o in latest} == {95}
    assert all(o["created"] < o["modified"] and o["valid_from"] == "2026-11-20T08:00:00.000Z" for o in latest)

    # Narrowing the audience must reach the stored rows too, so it makes new versions.
    slug, _ = partners.add()
    narrowed = api.post("/api/v1/incidents", json=incident_body(coll.alias, values, confidence=95,
                                                                 audience=[slug])).json()
    assert {o["status"] for o in by_type(narrowed)["indicator"]} == {"new"}


def test_an_incident_id_publishes_a_new_version_of_it(publish_server, api, admin, coll):
    values = observables()
    first = api.post("/api/v1/incidents", json=incident_body(coll.alias, values)).json()
    incident_id = first["incident"]
    second = api.post("/api/v1/incidents", json=incident_body(
        coll.alias, values, id=incident_id, title="Phishing wave (contained)", investigation_status="closed"))
    assert second.status_code == 201, second.text
    assert second.json()["incident"] == incident_id
    [old] = [o for o in first["objects"] if o["id"] == incident_id]
    [new] = [o for o in second.json()["objects"] if o["id"] == incident_id]
    assert new["status"] == "new" and new["version"] > old["version"]
    versions = taxii_objects(new["url"], admin, **{"match[version]": "all"})
    assert [v["name"] for v in versions] == ["Phishing wave against bank customers", "Phishing wave (contained)"]
    assert versions[0]["created"] == versions[1]["created"]
    assert versions[1]["extensions"][INCIDENT_CORE]["investigation_status"] == "closed"

    unknown = api.post("/api/v1/incidents", json=incident_body(coll.alias, values, id=f"incident--{uuid.uuid4()}"))
    assert unknown.status_code == 422 and "id: no incident" in unknown.json()["detail"]


def test_revoke_stores_a_revoked_version_served_over_taxii(publish_server, api, admin, coll):
    values = observables()
    published = api.post("/api/v1/incidents", json=incident_body(coll.alias, values)).json()
    incident_id = published["incident"]
    [before] = [o for o in published["objects"] if o["id"] == incident_id]

    response = api.post(f"/api/v1/objects/{incident_id}/revoke")
    assert response.status_code == 200, response.text
    revoked = response.json()
    assert revoked["revoked"] and revoked["changed"] and revoked["version"] > before["version"]
    assert [(c["collection"], c["status"]) for c in revoked["collections"]] == [(coll.alias, "new")]
    [latest] = taxii_objects(before["url"], admin)
    assert latest["revoked"] is True and latest["modified"] == revoked["version"]
    assert len(taxii_objects(before["url"], admin, **{"match[version]": "all"})) == 2

    again = api.post(f"/api/v1/objects/{incident_id}/revoke", json={"collection": coll.alias}).json()
    assert not again["changed"] and again["version"] == revoked["version"]
    assert api.post(f"/api/v1/objects/incident--{uuid.uuid4()}/revoke").status_code == 404
    events = api.get("/api/v1/audit", params={"action": "object.revoke", "limit": 5}).json()
    assert any(e["target"] == incident_id for e in events)

    # A revoked indicator is never versioned again: the same observable gets a fresh id.
    [domain] = [o for o in published["objects"] if o["type"] == "indicator"
                and taxii_objects(o["url"], admin)[0]["pattern"].startswith("[domain-name")]
    assert api.post(f"/api/v1/objects/{domain['id']}/revoke").status_code == 200
    body = incident_body(coll.alias, values)
    body["observables"] = body["observables"][:1]
    republished = api.post("/api/v1/incidents", json=body).json()
    [fresh] = by_type(republished)["indicator"]
    assert fresh["id"] != domain["id"] and fresh["status"] == "new"


def test_new_version_of_an_object(publish_server, api, admin, coll):
    published = api.post("/api/v1/incidents", json=incident_body(coll.alias, observables())).json()
    target = by_type(published)["indicator"][0]
    response = api.post(f"/api/v1/objects/{target['id']}/versions", json={"description": "Now a takedown target"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["changed"] and result["version"] > target["version"]
    [latest] = taxii_objects(target["url"], admin)
    assert latest["description"] == "Now a takedown target" and latest["modified"] == result["version"]

    same = api.post(f"/api/v1/objects/{target['id']}/versions", json={"description": "Now a takedown target"})
    assert same.status_code == 200 and not same.json()["changed"]
    rows = stored_rows(publish_server, coll)
    for changes, field in (({"id": "indicator--x"}, "id"), ({"created": "2020-01-01T00:00:00Z"}, "created"),
                           ({"confidence": 500}, "confidence"), ({"pattern": "[nope"}, "pattern")):
        refused = api.post(f"/api/v1/objects/{target['id']}/versions", json=changes)
        assert refused.status_code == 422 and field in refused.json()["detail"], refused.text
    assert stored_rows(publish_server, coll) == rows
    assert api.post(f"/api/v1/objects/indicator--{uuid.uuid4()}/versions",
                    json={"description": "x"}).status_code == 404


def _bad_cases() -> list[tuple[str, dict[str, Any], str]]:
    values = observables()

    def body(**changes: Any) -> dict[str, Any]:
        return {**incident_body("COLL", values), **changes}

    def observable(index: int, replacement: dict[str, str]) -> dict[str, Any]:
        base = incident_body("COLL", values)
        base["observables"][index] = replacement
        return base

    without_title = body()
    del without_title["title"]
    return [
        ("missing title", without_title, "title"),
        ("unknown observable type", observable(0, {"type": "bitcoin-wallet", "value": "1abc"}), "bitcoin-wallet"),
        ("bad IPv4", observable(1, {"type": "ipv4-addr", "value": "45.13.22.999"}), "45.13.22.999"),
        ("IPv4 host bits", observable(1, {"type": "ipv4-addr", "value": "45.13.22.7/24"}), "host bits"),
        ("bad hash length", observable(2, {"type": "file:hashes.'SHA-256'", "value": "abc123"}), "SHA-256"),
        ("hash not hex", observable(2, {"type": "md5", "value": "z" * 32}), "hexadecimal"),
        ("invalid pattern", observable(3, {"pattern": "[url:value = 'http://x.top/a'"}), "pattern"),
        ("type and pattern", observable(3, {"type": "url", "value": "http://a.top",
                                            "pattern": "[url:value = 'http://a.top']"}), "not both"),
        ("unknown TLP", body(tlp="purple"), "tlp"),
        ("unknown audience", body(audience=["no-such-partner"]), "audience"),
        ("unknown collection", body(collection="no-such-collection"), "collection"),
        ("last before first", body(last_seen="2026-11-19T00:00:00Z"), "last_seen"),
        ("naive timestamp", body(first_seen="2026-11-20T08:00:00"), "first_seen"),
        ("confidence out of range", body(confidence=101), "confidence"),
    ]


BAD_CASES = _bad_cases()


@pytest.mark.parametrize("case, body, named", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_422_and_stores_nothing(publish_server, api, coll, case, body, named):
    body = {**body, "collection": coll.alias if body.get("collection") == "COLL" else body["collection"]}
    before = total_rows(publish_server)
    response = api.post("/api/v1/incidents", json=body)
    assert response.status_code == 422, response.text
    assert named in response.text
    assert total_rows(publish_server) == before and stored_rows(publish_server, coll) == 0


def test_bundle_keeps_good_objects_and_reports_bad_ones(publish_server, api, admin, coll):
    good = [indicator(1), indicator(2)]
    bad = indicator(3, modified="2025-01-01T00:00:00.000Z")  # before created
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [good[0], bad, good[1]]}
    response = api.post("/api/v1/bundles", params={"collection": coll.alias}, json=bundle)
    assert response.status_code == 200, response.text
    status = response.json()
    assert (status["status"], status["total_count"], status["success_count"], status["failure_count"]) == (
        "complete", 3, 2, 1)
    assert status["failures"][0]["id"] == bad["id"] and "modified" in status["failures"][0]["message"]
    assert {o["id"] for o in taxii_objects(publish_server.collection_url(coll) + "objects/", admin)} == {
        g["id"] for g in good}
    taxii_status = httpx.get(f"{publish_server.api_root}status/{status['id']}/", auth=admin,
                             headers={"Accept": TAXII}).json()
    assert taxii_status["success_count"] == 2 and taxii_status["failure_count"] == 1

    rows = stored_rows(publish_server, coll)
    not_a_bundle = api.post("/api/v1/bundles", params={"collection": coll.alias}, json={"objects": good})
    assert not_a_bundle.status_code == 422 and "type" in not_a_bundle.json()["detail"]
    duplicate_keys = b'{"type": "bundle", "type": "bundle", "id": "bundle--%s", "objects": []}' % str(
        uuid.uuid4()).encode()
    assert api.post("/api/v1/bundles", params={"collection": coll.alias}, content=duplicate_keys,
                    headers={"Content-Type": "application/json"}).status_code == 400
    unknown = api.post("/api/v1/bundles", params={"collection": "no-such-collection"}, json=bundle)
    assert unknown.status_code == 422 and "collection" in unknown.json()["detail"]
    assert stored_rows(publish_server, coll) == rows


def test_observable_lookup_finds_indicators_sightings_and_incidents(publish_server, api, coll):
    values = observables()
    published = api.post("/api/v1/incidents", json=incident_body(coll.alias, values)).json()
    indicators = {o["id"] for o in by_type(published)["indicator"]}
    sightings_coll = publish_server.collection()
    lookup = api.get("/api/v1/observables", params={"value": values["domain"].upper() + "."}).json()
    [domain] = [i for i in lookup["indicators"] if i["id"] in indicators]
    assert (lookup["type"], lookup["value"]) == ("domain-name", values["domain"])
    assert domain["collections"] == [coll.alias] and domain["matched"] == ["exact"]
    [incident] = lookup["incidents"]
    assert incident["id"] == published["incident"] and incident["via"] == [domain["id"]]
    assert incident["collections"] == [coll.alias] and lookup["sightings"] == []

    sighting = {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{uuid.uuid4()}",
                "created": "2026-11-22T00:00:00.000Z", "modified": "2026-11-22T00:00:00.000Z",
                "sighting_of_ref": domain["id"], "count": 12}
    posted = api.post("/api/v1/bundles", params={"collection": sightings_coll.alias},
                      json={"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [sighting]})
    assert posted.json()["success_count"] == 1
    lookup = api.get("/api/v1/observables", params={"value": values["domain"]}).json()
    assert [(s["id"], s["collections"]) for s in lookup["sightings"]] == [(sighting["id"], [sightings_coll.alias])]

    # The domain inside the URL indicator, the URL itself, the address and the hash.
    url_host = api.get("/api/v1/observables", params={"value": values["url_host"]}).json()
    assert any("url-host" in i["matched"] for i in url_host["indicators"] if i["id"] in indicators)
    for value in (values["url"].upper().replace("/A", "/a"), values["ip"], values["sha256"].upper()):
        found = api.get("/api/v1/observables", params={"value": value}).json()
        assert [i["id"] for i in found["indicators"] if i["id"] in indicators], value
        assert [i["id"] for i in found["incidents"]] == [published["incident"]], value

    network = f"198.51.{secrets.randbelow(256)}.0/24"
    body = incident_body(coll.alias, values)
    body["observables"] = [{"type": "ipv4-addr", "value": network}]
    in_range = api.post("/api/v1/incidents", json=body).json()
    found = api.get("/api/v1/observables", params={"value": network.replace("0/24", "77")}).json()
    assert [(i["id"], i["matched"]) for i in found["indicators"]] == [
        (by_type(in_range)["indicator"][0]["id"], ["network"])]

    nothing = api.get("/api/v1/observables", params={"value": f"never-{secrets.token_hex(6)}.example"}).json()
    assert nothing["indicators"] == nothing["sightings"] == nothing["incidents"] == []
    garbage = api.get("/api/v1/observables", params={"value": "not a value at all!"})
    assert garbage.status_code == 422 and "value" in garbage.json()["detail"]


def test_partners_get_403_and_strangers_401(publish_server, coll, partners):  # noqa: F811
    _, (_, key) = partners.add()
    values = observables()
    calls = [
        ("POST", "/api/v1/incidents", incident_body(coll.alias, values)),
        ("POST", "/api/v1/bundles", {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [indicator(1)]}),
        ("POST", f"/api/v1/objects/incident--{uuid.uuid4()}/revoke", None),
        ("POST", f"/api/v1/objects/incident--{uuid.uuid4()}/versions", {"name": "x"}),
        ("GET", "/api/v1/observables?value=example.org", None),
    ]
    for method, path, body in calls:
        forbidden = httpx.request(method, publish_server.url + path, json=body,
                                  headers={"Authorization": f"Bearer {key}"})
        assert forbidden.status_code == 403, (path, forbidden.text)
        assert httpx.request(method, publish_server.url + path, json=body).status_code == 401
    assert stored_rows(publish_server, coll) == 0
