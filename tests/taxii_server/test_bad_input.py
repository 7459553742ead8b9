"""Hostile and broken input: each gets a clear TAXII error and loses nothing else."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, is_error_resource, post

pytestmark = pytest.mark.live


def count(http: httpx.Client, url: str) -> int:
    return len(http.get(url + "objects/", params={"match[version]": "all"}).json().get("objects", []))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"objects": [', "JSON"),
        (b'{"objects": [], "objects": []}', "objects"),
        (b'\xff\xfe{"objects": []}', "UTF-8"),
        (b'{"objects": [{"type": "indicator", "confidence": NaN}]}', "NaN"),
        (b'{"objects": [{"n": 9007199254740993}]}', "9007199254740993"),
        (b'{"objects": [{"s": "\\ud800"}]}', "surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "deep"),
        (b'"just a string"', "envelope"),
        (b'{"no_objects": []}', "envelope"),
        (b'{"objects": {"type": "indicator"}}', "envelope"),
        (b'{"objects": []}', "no objects"),
    ],
)
def test_malformed_bodies_are_400_and_store_nothing(live_server, http, coll, body, says):
    url = live_server.collection_url(coll)
    error = is_error_resource(post(http, url, body), 400)
    assert says.lower() in (error["title"] + error["description"]).lower(), error
    assert count(http, url) == 0


def test_duplicate_keys_inside_an_object_are_refused(live_server, http, coll):
    url = live_server.collection_url(coll)
    obj = orjson.dumps(indicator()).decode()
    body = ('{"objects": [' + obj[:-1] + ', "name": "second"}]}').encode()
    error = is_error_resource(post(http, url, body), 400)
    assert "name" in error["description"]
    assert count(http, url) == 0


def _bad_objects() -> list[tuple[dict, str]]:  # type: ignore[type-arg]
    good = indicator()
    return [
        ({k: v for k, v in good.items() if k != "pattern"}, "pattern"),
        (dict(good, id="indicator--not-a-uuid"), "id"),
        (dict(good, id=f"malware--{uuid.uuid4()}"), "id"),
        (dict(good, modified="2020-01-01T00:00:00.000Z"), "modified"),
        (dict(good, created="2026-13-45T00:00:00Z"), "created"),
        (dict(good, pattern="[ipv4-addr:value = '1.2.3.4'"), "pattern"),
        (dict(good, confidence="high"), "confidence"),
        (dict(good, spec_version="2.0"), "spec_version"),
        (dict(good, **{"Bad-Name": 1}), "Bad-Name"),
        (
            {
                "type": "marking-definition",
                "spec_version": "2.1",
                "id": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
                "created": "2022-10-01T00:00:00.000Z",
                "name": "TLP:CLEAR",
                "extensions": {
                    "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                        "extension_type": "property-extension",
                        "tlp_2_0": "red",
                    }
                },
            },
            "TLP",
        ),
    ]


@pytest.mark.parametrize(("bad", "says"), _bad_objects())
def test_invalid_object_fails_alone_and_good_ones_are_kept(live_server, http, coll, bad, says):
    url = live_server.collection_url(coll)
    good = [indicator(1), indicator(2)]
    response = post(http, url, envelope([good[0], bad, good[1]]))
    assert response.status_code == 202
    status = response.json()
    assert (status["success_count"], status["failure_count"], status["total_count"]) == (2, 1, 3)
    assert says.lower() in status["failures"][0]["message"].lower(), status["failures"]
    assert {o["id"] for o in http.get(url + "objects/").json()["objects"]} == {g["id"] for g in good}


def test_non_object_entries_fail_with_a_message(live_server, http, coll):
    status = post(http, live_server.collection_url(coll), envelope(["x", 3, None, [], indicator()])).json()  # type: ignore[list-item]
    assert status["failure_count"] == 4 and status["success_count"] == 1
    assert all(f["message"] for f in status["failures"])


def test_same_version_with_other_content_is_refused_and_the_stored_one_kept(live_server, http, coll):
    url = live_server.collection_url(coll)
    obj = indicator()
    post(http, url, envelope([obj]))
    status = post(http, url, envelope([dict(obj, name="changed")])).json()
    assert status["failure_count"] == 1 and "modified" in status["failures"][0]["message"]
    assert http.get(f"{url}objects/{obj['id']}/").json()["objects"][0]["name"] == obj["name"]


def test_oversize_body_is_413(live_server, http, coll):
    url = live_server.collection_url(coll)
    big = b'{"objects": [' + b" " * (live_server.settings.max_content_length + 10) + b"]}"
    is_error_resource(post(http, url, big), 413)


def test_oversize_chunked_body_is_413(live_server, http, coll):
    url = live_server.collection_url(coll)
    limit = live_server.settings.max_content_length

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"objects": ['
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    response = http.post(url + "objects/", content=chunks(), headers={"Content-Type": TAXII})
    is_error_resource(response, 413)


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/taxii+json;version=2.0", ""]
)
def test_wrong_content_type_is_415(live_server, http, coll, content_type):
    url = live_server.collection_url(coll)
    response = http.post(
        url + "objects/",
        content=orjson.dumps(envelope([indicator()])),
        headers={"Content-Type": content_type},
    )
    is_error_resource(response, 415)
    assert count(http, url) == 0


def test_empty_body_is_400(live_server, http, coll):
    is_error_resource(post(http, live_server.collection_url(coll), b""), 400)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"added_after": "yesterday"}, "added_after"),
        ({"added_after": "2026-02-30T00:00:00Z"}, "added_after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, ""),
        ({"match[version]": "newest"}, "match[version]"),
        ({"match[type]": "Not A Type"}, "match[type]"),
        ({"match[id]": "indicator"}, "match[id]"),
        ({"match[spec_version]": "two"}, "match[spec_version]"),
        ({"next": "garbage"}, "next"),
        ({"added_after": "2026-01-01T01:00:00+01:00"}, "added_after"),
        ({"match[version]": "all,last"}, "match[version]"),
        ({"match[version]": "last,last"}, "match[version]"),
        ({"match[type]": "indicator,indicator"}, "match[type]"),
        ({"next": "eyJhIjoxfQ.AAAA"}, "next"),
        # What Python's int() and a Unicode \\d read, and ASCII digits alone do not.
        ({"limit": "\u0663"}, "limit"),
        ({"limit": "5_0"}, "limit"),
        ({"limit": "+5"}, "limit"),
        ({"limit": " 5"}, "limit"),
        ({"limit": "\uff15"}, "limit"),
        ({"added_after": "\uff12\uff10\uff12\uff10-01-01T00:00:00Z"}, "added_after"),
    ],
)
def test_bad_query_parameters_are_400(live_server, http, coll, params, says):
    for endpoint in ("objects/", "manifest/"):
        error = is_error_resource(http.get(live_server.collection_url(coll) + endpoint, params=params), 400)
        assert says in error["description"], error


@pytest.mark.parametrize("key", ["added_after", "match[type]", "match[version]", "match[id]"])
def test_repeated_parameters_are_400(live_server, http, coll, key):
    values = {
        "added_after": "2026-01-01T00:00:00Z",
        "match[type]": "indicator",
        "match[version]": "last",
        "match[id]": "indicator--5d3f2c1b-0a9e-4c8d-b7f6-e5d4c3b2a190",
    }
    params = [(key, values[key]), (key, values[key])]
    error = is_error_resource(http.get(live_server.collection_url(coll) + "objects/", params=params), 400)
    assert key in error["description"]


@pytest.mark.parametrize(
    "params",
    [
        [("limit", "1"), ("limit", "abc")],
        [("limit", "abc"), ("limit", "1")],
        [("limit", "1"), ("limit", "1")],
    ],
)
def test_a_repeated_limit_is_400_whichever_comes_first(live_server, http, coll, params):
    error = is_error_resource(http.get(live_server.collection_url(coll) + "objects/", params=params), 400)
    assert "'limit' occurs 2 times" in error["description"], error


def test_a_repeated_next_is_400_whichever_comes_first(live_server, http, coll):
    url = live_server.collection_url(coll)
    post(http, url, envelope([indicator(1), indicator(2)]))
    token = http.get(url + "objects/", params={"limit": 1}).json()["next"]
    for params in ([("next", token), ("next", "garbage")], [("next", "garbage"), ("next", token)]):
        error = is_error_resource(http.get(url + "objects/", params=params), 400)
        assert "'next' occurs 2 times" in error["description"], error
    assert http.get(url + "objects/", params={"next": token}).status_code == 200


def test_tampered_cursor_is_400(live_server, http, coll):
    url = live_server.collection_url(coll)
    post(http, url, envelope([indicator(1), indicator(2)]))
    token = http.get(url + "objects/", params={"limit": 1}).json()["next"]
    body, mac = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    is_error_resource(http.get(url + "objects/", params={"next": f"{flipped}.{mac}"}), 400)


def test_cursor_from_another_caller_is_refused(live_server, http, coll):
    url = live_server.collection_url(coll)
    post(http, url, envelope([indicator(1), indicator(2)]))
    token = http.get(url + "objects/", params={"limit": 1}).json()["next"]
    other = live_server.credential("analyst")
    response = httpx.get(url + "objects/", params={"next": token}, headers={"Accept": TAXII}, auth=other)
    is_error_resource(response, 400)


def test_method_not_allowed_is_a_taxii_error(live_server, http, coll):
    response = http.put(
        live_server.collection_url(coll) + "objects/", content=b"{}", headers={"Content-Type": TAXII}
    )
    assert response.status_code in (405, 415)
    assert response.headers["content-type"].startswith("application/taxii+json")


def test_content_from_real_tools_is_accepted_and_served_byte_for_byte(live_server, http, coll):
    import rfc8785

    url = live_server.collection_url(coll)
    opencti = indicator(
        7,
        x_opencti_score=80,
        x_opencti_detection=True,
        extensions={
            "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba": {
                "extension_type": "property-extension",
                "score": 80,
                "main_observable_type": "IPv4-Addr",
            }
        },
    )
    misp = indicator(
        8, x_misp_category="Network activity", x_misp_type="ip-dst", labels=['misp:type="ip-dst"']
    )
    uuid5_id = f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, 'http://x.example/a')}"
    v5 = indicator(9, stix_id=uuid5_id)
    custom = {
        "type": "x-acme-ticket",
        "spec_version": "2.1",
        "id": f"x-acme-ticket--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "x_acme_priority": 3,
        "summary": "custom object",
    }
    objs = [opencti, misp, v5, custom]
    status = post(http, url, envelope(objs)).json()
    assert status["success_count"] == 4, status.get("failures")
    raw = http.get(url + "objects/").content
    for obj in objs:
        assert rfc8785.dumps(obj) in raw
