"""TAXII 2.1 normative points, checked over HTTP against a live server (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC

import httpx
import orjson
import pytest
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, is_error_resource, post

pytestmark = pytest.mark.live


# --- discovery, API root, collections (sections 4.1, 4.2, 5.1, 5.2) ----------------------


def test_discovery_with_taxii2_client(live_server, admin):
    server = Server(f"{live_server.url}/taxii2/", user=admin[0], password=admin[1])
    assert server.title
    assert server.default.url == live_server.api_root
    assert live_server.api_root in [root.url for root in server.api_roots]


def test_api_root_information(live_server, admin):
    root = ApiRoot(live_server.api_root, user=admin[0], password=admin[1])
    assert root.versions == [TAXII]
    assert root.max_content_length == live_server.settings.max_content_length
    aliases = {c.alias for c in root.collections}
    assert {"indicators", "incidents", "partner-submissions"} <= aliases


def test_collection_resource_by_id_and_alias(live_server, http, coll):
    by_id = http.get(live_server.collection_url(coll))
    assert by_id.status_code == 200
    assert by_id.headers["content-type"] == TAXII
    body = by_id.json()
    assert body["id"] == coll.id and body["alias"] == coll.alias
    assert body["can_read"] is True and body["can_write"] is True
    assert body["media_types"] == ["application/stix+json;version=2.1"]
    by_alias = http.get(f"{live_server.api_root}collections/{coll.alias}/")
    assert by_alias.json()["id"] == coll.id


def test_unknown_api_root_collection_and_status_are_404(live_server, http):
    is_error_resource(http.get(f"{live_server.url}/taxii2/nope/"), 404)
    is_error_resource(
        http.get(f"{live_server.api_root}collections/00000000-0000-4000-8000-000000000000/"), 404
    )
    is_error_resource(http.get(f"{live_server.api_root}status/00000000-0000-4000-8000-000000000000/"), 404)
    is_error_resource(http.get(f"{live_server.api_root}no/such/endpoint/"), 404)


# --- authentication and content negotiation ---------------------------------------------


@pytest.mark.parametrize("auth", [None, ("nobody", "wrong"), ("", "")])
def test_unauthenticated_is_401_with_challenge(live_server, auth):
    response = httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": TAXII}, auth=auth)
    is_error_resource(response, 401)
    assert response.headers["www-authenticate"].startswith("Basic")


def test_wrong_key_for_a_real_credential_is_401(live_server, admin):
    response = httpx.get(
        f"{live_server.url}/taxii2/", headers={"Accept": TAXII}, auth=(admin[0], "x" + admin[1])
    )
    is_error_resource(response, 401)


def test_expired_and_revoked_credentials_are_401(live_server):
    from datetime import datetime, timedelta

    from exchange.auth import service as auth_service

    expired = live_server.credential("analyst", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    is_error_resource(httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": TAXII}, auth=expired), 401)
    revoked = live_server.credential("analyst")
    assert httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": TAXII}, auth=revoked).status_code == 200
    with live_server.session() as db:
        auth_service.revoke(db, revoked[0])
    is_error_resource(httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": TAXII}, auth=revoked), 401)


@pytest.mark.parametrize(
    "accept",
    [
        "application/taxii+json;version=2.1",
        "application/taxii+json",
        "application/taxii+json; version=2.1",
        "application/json;q=0.5, application/taxii+json;version=2.1",
        "*/*",
    ],
)
def test_acceptable_accept_headers(live_server, admin, accept):
    response = httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": accept}, auth=admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == TAXII


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "application/taxii+json;version=2.0",
        "text/html",
        # Not RFC 9110 qvalues: float() read them, and "nan" passed as acceptable.
        "application/taxii+json;version=2.1;q=nan",
        "application/taxii+json;version=2.1;q=inf",
        "application/taxii+json;version=2.1;q=1.5",
        "*/*;q=1e-3",
    ],
)
def test_unacceptable_accept_headers_are_406(live_server, admin, accept):
    response = httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": accept}, auth=admin)
    is_error_resource(response, 406)


# --- add objects and status (sections 5.5, 4.3) ------------------------------------------


def test_add_objects_with_taxii2_client_and_read_status(live_server, admin, coll):
    collection = Collection(live_server.collection_url(coll), user=admin[0], password=admin[1])
    objs = [indicator(i) for i in range(3)]
    status = collection.add_objects(orjson.dumps(envelope(objs)).decode(), wait_for_completion=False)
    assert status.status == "complete"
    assert (status.total_count, status.success_count, status.failure_count, status.pending_count) == (
        3,
        3,
        0,
        0,
    )
    assert {s["id"] for s in status.successes} == {o["id"] for o in objs}
    status.refresh()
    assert status.success_count == 3


def test_status_is_private_to_its_submitter(live_server, http, coll):
    status = post(http, live_server.collection_url(coll), envelope([indicator()])).json()
    other = live_server.credential("analyst")
    response = httpx.get(
        f"{live_server.api_root}status/{status['id']}/", headers={"Accept": TAXII}, auth=other
    )
    is_error_resource(response, 404)


def test_post_answers_202_with_status_resource(live_server, http, coll):
    response = post(http, live_server.collection_url(coll), envelope([indicator()]))
    assert response.status_code == 202
    assert response.headers["content-type"] == TAXII
    assert response.json()["status"] == "complete"


def test_exact_duplicate_is_a_success_and_not_a_new_row(live_server, http, coll):
    obj = indicator()
    first = post(http, live_server.collection_url(coll), envelope([obj])).json()
    again = post(http, live_server.collection_url(coll), envelope([obj])).json()
    assert first["success_count"] == again["success_count"] == 1
    versions = http.get(f"{live_server.collection_url(coll)}objects/{obj['id']}/versions/").json()
    assert versions["versions"] == [obj["modified"]]


# --- get objects, paging, headers (section 5.4) ------------------------------------------


def _load(live_server, http, coll, n: int) -> list[dict]:  # type: ignore[type-arg]
    objs = [indicator(i) for i in range(n)]
    status = post(http, live_server.collection_url(coll), envelope(objs)).json()
    assert status["success_count"] == n, status
    return objs


def test_paging_with_as_pages_returns_everything_once_in_order(live_server, admin, http, coll):
    objs = _load(live_server, http, coll, 25)
    collection = Collection(live_server.collection_url(coll), user=admin[0], password=admin[1])
    seen = []
    pages = 0
    for page in as_pages(collection.get_objects, per_request=7):
        pages += 1
        seen += [o["id"] for o in page.get("objects", [])]
        assert ("next" in page) == page["more"]
    assert pages == 4
    assert seen == [o["id"] for o in objs]


def test_served_bytes_are_the_canonical_stored_text(live_server, http, coll):
    import rfc8785

    obj = indicator(x_opencti_score=50, x_misp_category="Network activity")
    post(http, live_server.collection_url(coll), envelope([obj]))
    raw = http.get(f"{live_server.collection_url(coll)}objects/").content
    assert rfc8785.dumps(obj) in raw


def test_date_added_headers_and_added_after_polling(live_server, http, coll):
    url = f"{live_server.collection_url(coll)}objects/"
    _load(live_server, http, coll, 3)
    first = http.get(url)
    assert first.json()["more"] is False
    head, tail = first.headers["x-taxii-date-added-first"], first.headers["x-taxii-date-added-last"]
    assert head < tail
    manifest = http.get(f"{live_server.collection_url(coll)}manifest/").json()["objects"]
    assert [m["date_added"] for m in manifest] == sorted(m["date_added"] for m in manifest)
    assert manifest[0]["date_added"] == head and manifest[-1]["date_added"] == tail
    # Nothing new: an empty envelope, still with both headers, pointing where to resume.
    empty = http.get(url, params={"added_after": tail})
    assert empty.status_code == 200 and "objects" not in empty.json() and empty.json()["more"] is False
    assert empty.headers["x-taxii-date-added-last"] >= tail
    later = _load(live_server, http, coll, 2)
    polled = http.get(url, params={"added_after": empty.headers["x-taxii-date-added-last"]}).json()
    assert [o["id"] for o in polled["objects"]] == [o["id"] for o in later]


def test_empty_collection_has_date_headers(live_server, http, coll):
    for endpoint in ("objects/", "manifest/"):
        response = http.get(live_server.collection_url(coll) + endpoint)
        assert response.status_code == 200
        assert response.json() == {"more": False}
        assert "x-taxii-date-added-first" in response.headers
        assert "x-taxii-date-added-last" in response.headers


def test_date_added_strictly_increasing_across_concurrent_writers(live_server, admin, coll):
    import concurrent.futures

    url = live_server.collection_url(coll)

    def write(batch: int) -> int:
        with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=60) as client:
            return post(client, url, envelope([indicator(batch * 100 + i) for i in range(20)])).json()[
                "success_count"
            ]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(write, range(8))) == 160
    with httpx.Client(auth=admin, headers={"Accept": TAXII}) as client:
        entries = client.get(url + "manifest/").json()["objects"]
    stamps = [e["date_added"] for e in entries]
    assert len(stamps) == 160 and len(set(stamps)) == 160 and stamps == sorted(stamps)


def test_match_filters(live_server, http, coll):
    url = live_server.collection_url(coll)
    objs = _load(live_server, http, coll, 3)
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": "malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "x",
        "is_family": False,
    }
    post(http, url, envelope([malware]))
    by_type = http.get(url + "objects/", params={"match[type]": "malware"}).json()["objects"]
    assert [o["id"] for o in by_type] == [malware["id"]]
    both = http.get(url + "objects/", params={"match[type]": "malware,indicator"}).json()["objects"]
    assert len(both) == 4
    by_id = http.get(url + "objects/", params={"match[id]": f"{objs[0]['id']},{objs[2]['id']}"}).json()[
        "objects"
    ]
    assert {o["id"] for o in by_id} == {objs[0]["id"], objs[2]["id"]}
    assert len(http.get(url + "objects/", params={"match[spec_version]": "2.1"}).json()["objects"]) == 4
    assert "objects" not in http.get(url + "objects/", params={"match[spec_version]": "2.0"}).json()


def test_match_version_last_first_all_exact(live_server, http, coll):
    url = live_server.collection_url(coll)
    v1 = indicator(1)
    stamps = ["2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"]
    versions = [dict(v1, modified=s, name=f"v{k}") for k, s in enumerate(stamps)]
    # Posted out of order: versions are ordered by 'modified', not by arrival.
    post(http, url, envelope([versions[1], versions[2], versions[0]]))

    def names(params):  # type: ignore[no-untyped-def]
        return [o["name"] for o in http.get(url + "objects/", params=params).json().get("objects", [])]

    assert names({}) == ["v2"]
    assert names({"match[version]": "last"}) == ["v2"]
    assert names({"match[version]": "first"}) == ["v0"]
    assert sorted(names({"match[version]": "all"})) == ["v0", "v1", "v2"]
    assert names({"match[version]": stamps[1]}) == ["v1"]
    assert sorted(names({"match[version]": "first,last"})) == ["v0", "v2"]
    assert names({"match[version]": "2026-02-01T00:00:00Z"}) == ["v1"]  # same instant, other spelling
    one = http.get(f"{url}objects/{v1['id']}/").json()["objects"]
    assert [o["name"] for o in one] == ["v2"]
    all_of_one = http.get(f"{url}objects/{v1['id']}/", params={"match[version]": "all"}).json()["objects"]
    assert len(all_of_one) == 3
    listed = http.get(f"{url}objects/{v1['id']}/versions/")
    assert listed.json() == {"more": False, "versions": stamps}
    assert "x-taxii-date-added-first" in listed.headers


def test_versions_paging(live_server, http, coll):
    url = live_server.collection_url(coll)
    base = indicator(2)
    stamps = [f"2026-01-{d:02d}T00:00:00.000Z" for d in range(1, 8)]
    post(http, url, envelope([dict(base, modified=s) for s in stamps]))
    seen, params = [], {"limit": 3}
    while True:
        page = http.get(f"{url}objects/{base['id']}/versions/", params=params).json()
        seen += page["versions"]
        if not page["more"]:
            break
        params = {"limit": 3, "next": page["next"]}
    assert seen == stamps


def test_get_unknown_object_is_404(live_server, http, coll):
    url = live_server.collection_url(coll)
    missing = "indicator--5d3f2c1b-0a9e-4c8d-b7f6-e5d4c3b2a190"
    is_error_resource(http.get(f"{url}objects/{missing}/"), 404)
    is_error_resource(http.get(f"{url}objects/{missing}/versions/"), 404)
    is_error_resource(http.delete(f"{url}objects/{missing}/"), 404)


def test_delete_object_versions(live_server, http, coll):
    url = live_server.collection_url(coll)
    base = indicator(3)
    stamps = ["2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]
    post(http, url, envelope([dict(base, modified=s) for s in stamps]))
    assert http.delete(f"{url}objects/{base['id']}/", params={"match[version]": stamps[1]}).status_code == 200
    # The remaining version becomes the latest again.
    assert http.get(f"{url}objects/{base['id']}/").json()["objects"][0]["modified"] == stamps[0]
    assert http.delete(f"{url}objects/{base['id']}/").status_code == 200
    assert http.get(f"{url}objects/{base['id']}/").status_code == 404


def test_next_cursor_carries_its_query(live_server, http, coll):
    url = live_server.collection_url(coll) + "objects/"
    objs = _load(live_server, http, coll, 6)
    after = http.get(url).headers["x-taxii-date-added-first"]
    first = http.get(url, params={"limit": 2, "added_after": after}).json()
    expected = [o["id"] for o in objs[1:]]
    # Omitting the filters (as OpenCTI does once it holds a cursor) continues the same query.
    second = http.get(url, params={"limit": 2, "next": first["next"]}).json()
    # Repeating them does too.
    third = http.get(url, params={"limit": 2, "next": second["next"], "added_after": after}).json()
    got = [o["id"] for page in (first, second, third) for o in page["objects"]]
    assert got == expected[:6]
    changed = http.get(url, params={"limit": 2, "next": first["next"], "match[type]": "malware"})
    is_error_resource(changed, 400)


def test_next_cursor_of_another_endpoint_or_collection_is_refused(live_server, http, coll):
    url = live_server.collection_url(coll)
    _load(live_server, http, coll, 3)
    token = http.get(url + "objects/", params={"limit": 1}).json()["next"]
    is_error_resource(http.get(url + "manifest/", params={"next": token}), 400)
    other = live_server.collection()
    is_error_resource(http.get(live_server.collection_url(other) + "objects/", params={"next": token}), 400)


def test_limit_larger_than_page_size_is_capped(live_server, http, coll):
    _load(live_server, http, coll, 3)
    body = http.get(live_server.collection_url(coll) + "objects/", params={"limit": 10**9}).json()
    assert len(body["objects"]) == 3 and body["more"] is False


# --- points a spec review found (TAXII 2.1 sections cited) -------------------------------


def test_authentication_comes_before_content_checks(live_server, coll):
    """Sections 5.x: a client that fails authentication gets 401, whatever else is wrong."""
    url = live_server.collection_url(coll) + "objects/"
    for response in (
        httpx.get(url, headers={"Accept": "application/json"}),
        httpx.post(url, content=b"{}", headers={"Accept": TAXII, "Content-Type": "application/json"}),
        httpx.post(
            url,
            content=b" " * (live_server.settings.max_content_length + 1),
            headers={"Accept": TAXII, "Content-Type": TAXII},
        ),
    ):
        is_error_resource(response, 401)


def test_head_is_served_like_get_without_a_body(live_server, http, coll):
    _load(live_server, http, coll, 1)
    for path in ("objects/", "manifest/", ""):
        response = http.head(live_server.collection_url(coll) + path)
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-type"] == TAXII


def test_chunked_post_is_accepted(live_server, http, coll):
    data = orjson.dumps(envelope([indicator()]))
    response = http.post(
        live_server.collection_url(coll) + "objects/",
        content=iter([data[:10], data[10:]]),
        headers={"Content-Type": TAXII},
    )
    assert response.status_code == 202 and response.json()["success_count"] == 1


def test_delete_without_version_removes_only_the_latest(live_server, http, coll):
    """Section 3.4.1: 'last' is the default version parameter."""
    url = live_server.collection_url(coll)
    base = indicator(4)
    stamps = ["2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]
    post(http, url, envelope([dict(base, modified=s) for s in stamps]))
    assert http.delete(f"{url}objects/{base['id']}/").status_code == 200
    assert http.get(f"{url}objects/{base['id']}/versions/").json()["versions"] == stamps[:1]
    # Section 5.7: the deleted version is then a 404.
    gone = http.get(f"{url}objects/{base['id']}/", params={"match[version]": stamps[1]})
    is_error_resource(gone, 404)


def test_discovery_omits_empty_api_roots_and_uses_relative_urls(live_server, http):
    own = http.get(f"{live_server.url}/taxii2/").json()
    assert own["api_roots"] == [f"/taxii2/{live_server.settings.api_root}/"]
    import uuid

    from exchange.partner import service as partner_service

    with live_server.session() as db:
        _, cred, key = partner_service.create(
            db, slug=f"p-{uuid.uuid4().hex[:8]}", name="P", country="IN", actor="test"
        )
    body = httpx.get(f"{live_server.url}/taxii2/", headers={"Accept": TAXII}, auth=(cred.id, key)).json()
    assert "api_roots" not in body and "default" not in body


def test_duplicate_object_without_timestamps_reports_the_same_version(live_server, http, coll):
    sco = {
        "type": "ipv4-addr",
        "spec_version": "2.1",
        "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
        "value": "198.51.100.3",
    }
    url = live_server.collection_url(coll)
    first = post(http, url, envelope([sco])).json()["successes"][0]["version"]
    again = post(http, url, envelope([sco])).json()["successes"][0]["version"]
    assert first and first == again
    assert http.get(f"{url}objects/{sco['id']}/versions/").json()["versions"] == [first]
