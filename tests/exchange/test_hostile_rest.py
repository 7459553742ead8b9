"""Hostile input to the REST API (issue 10): a clear problem+json 4xx, never a 500."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from tests.support.taxii import problem

pytestmark = pytest.mark.live


@pytest.fixture
def api(live_server, admin):  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=30
    ) as client:
        yield client


@pytest.mark.parametrize(
    "value", ["http://[::1", "http://example.org:99999/x", "https://[fe80::1%zz/", "http://h:port/"]
)
def test_a_malformed_url_to_look_up_is_not_a_500(api, value):
    response = api.get("/api/v1/observables", params={"value": value})
    assert response.status_code == 200, response.text  # not a URL, so looked up as text
    assert response.json()["seen"] is False


@pytest.mark.parametrize("value", ["http://[::1", "http://example.org:99999/x"])
def test_a_malformed_url_among_an_incidents_observables_is_422(live_server, api, value):
    coll = live_server.collection()
    body = {
        "title": "t",
        "description": "d",
        "incident_types": ["phishing"],
        "severity": "high",
        "first_seen": "2026-11-20T08:00:00Z",
        "tlp": "amber",
        "collection": coll.alias,
        "observables": [{"type": "url", "value": value}],
    }
    error = problem(api.post("/api/v1/incidents", json=body), 422)
    assert "observables[0]" in error["detail"] and "not a URL" in error["detail"]


def test_a_credential_expiry_without_a_time_zone_is_422(api):
    slug = f"p-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/partners", json={"slug": slug, "name": "P", "country": "IN"}).status_code == 201
    for path, body in (
        (f"/api/v1/partners/{slug}/credentials", {"expires_at": "2030-01-01T00:00:00"}),
        ("/api/v1/users", {"name": "u", "role": "analyst", "expires_at": "2030-01-01T00:00:00"}),
    ):
        error = problem(api.post(path, json=body), 422)
        assert "expires_at" in error["detail"] and "timezone" in error["detail"], error
    made = api.post(f"/api/v1/partners/{slug}/credentials", json={"expires_at": "2030-01-01T00:00:00+06:00"})
    assert made.status_code == 201, made.text


@pytest.mark.parametrize("before", ["9" * 31, "-1", "0", "x"])
def test_an_audit_position_out_of_range_is_422(api, before):
    error = problem(api.get("/api/v1/audit", params={"before": before}), 422)
    assert "before" in error["detail"]


def test_a_feed_url_with_port_99999_is_400(live_server, api):
    coll = live_server.collection()
    body = {"name": f"f-{uuid.uuid4().hex[:8]}", "kind": "text", "collection": coll.alias}
    error = problem(api.post("/api/v1/feeds", json=body | {"url": "http://127.0.0.1:99999/x.txt"}), 400)
    assert "99999" in error["detail"] and "port" in error["detail"].lower()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/objects/indicator--%00",
        "/api/v1/objects/a%00b/sightings",
        "/api/v1/objects/a%00b/recipients",
        "/api/v1/partners/a%00b/credentials",
        "/api/v1/feeds/a%00b",
        "/api/v1/agreements/a%00b",
        "/api/v1/observables?value=a%00b",
        "/api/v1/audit?action=a%00b",
    ],
)
def test_a_nul_anywhere_in_a_rest_request_is_a_clear_4xx(api, path):
    answered_as_data_or_refused(api.get(path))


def answered_as_data_or_refused(response: httpx.Response) -> None:
    """SQLite stores and compares a NUL like any character; PostgreSQL text cannot hold one,
    so there it is a 400. Either way, never a 500."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text


def test_a_nul_in_a_rest_body_string_is_a_clear_4xx(api):
    slug = f"n-{uuid.uuid4().hex[:8]}"
    answered_as_data_or_refused(
        api.post("/api/v1/partners", json={"slug": slug, "name": "a\x00b", "country": "IN"})
    )


def test_a_nul_in_a_password_is_401(live_server, admin):
    raw = base64.b64encode(f"{admin[0]}:{admin[1]}\x00".encode()).decode()
    response = httpx.get(f"{live_server.url}/api/v1/partners", headers={"Authorization": f"Basic {raw}"})
    problem(response, 401)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/partners", {"GET", "POST"}),
        ("PUT", "/api/v1/partners/cert-nowhere", {"GET", "PATCH"}),
        ("POST", "/ui/", {"GET"}),
        # Static files, inside a mount: the Allow header came out empty.
        ("POST", "/ui/static/swagger-init.js", {"GET", "HEAD"}),
        ("DELETE", "/api/v1/docs/assets/swagger-ui.css", {"GET", "HEAD"}),
    ],
)
def test_a_method_a_path_does_not_take_is_405_naming_every_method_it_does(api, method, path, allowed):
    # RFC 9110 section 15.5.6: Allow lists the target's methods, not one route's (Starlette named
    # only the first route whose path matched: POST alone for /api/v1/partners).
    response = api.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == allowed


def _agreement(slug: str, alias: str, **sections: object) -> dict[str, object]:
    return {
        "partner": slug,
        "title": "long intervals",
        "valid_from": "2026-01-01",
        "valid_until": "2027-01-01",
        "status": "active",
        "read": {"collections": [alias], "max_tlp": "amber"},
        **sections,
    }


@pytest.mark.parametrize("every", ["3000000d", "366d", "P53W"])
def test_a_feed_interval_over_a_year_is_400_naming_every(live_server, api, every):
    # 3000000d once passed, ran once and then killed the scheduler computing the next run.
    coll = live_server.collection()
    body = {"name": f"f-{uuid.uuid4().hex[:8]}", "kind": "text", "collection": coll.alias}
    body |= {"url": "http://127.0.0.1:9/list.txt", "every": every}
    error = problem(api.post("/api/v1/feeds", json=body), 400)
    assert "every" in error["detail"] and "365d" in error["detail"], error


@pytest.mark.parametrize(
    ("field", "section"),
    [
        ("push.every", {"push": {"url": "https://taxii.example.org/", "every": "999999999d"}}),
        ("read.embargo", {}),
    ],
)
def test_an_agreement_duration_over_a_year_is_422_naming_the_field(live_server, api, field, section):
    slug = f"p-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/partners", json={"slug": slug, "name": "P", "country": "IN"}).status_code == 201
    alias = live_server.collection().alias
    doc = _agreement(slug, alias, **section)
    if field == "read.embargo":
        doc["read"] = {"collections": [alias], "max_tlp": "amber", "embargo": "999999999d"}
    checked = api.post("/api/v1/agreements/check", json=doc)
    assert checked.status_code == 200 and checked.json()["valid"] is False, checked.text
    assert any(field in str(p) and "365d" in str(p) for p in checked.json()["problems"]), checked.text
    for method, path in (("POST", "/api/v1/agreements/preview"), ("PUT", "/api/v1/agreements")):
        error = problem(api.request(method, path, json=doc), 422)
        assert field in str(error) and "365d" in str(error), error


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_an_expiry_whose_utc_time_is_out_of_range_is_422(api, moment):
    # Valid as written, but in UTC after 9999-12-31 or before 0001-01-01: a 500 storing it.
    slug = f"p-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/partners", json={"slug": slug, "name": "P", "country": "IN"}).status_code == 201
    for path, body in (
        (f"/api/v1/partners/{slug}/credentials", {"expires_at": moment}),
        ("/api/v1/users", {"name": "u", "role": "analyst", "expires_at": moment}),
    ):
        error = problem(api.post(path, json=body), 422)
        assert "expires_at" in error["detail"] and "out of range" in error["detail"], error


def test_a_first_seen_whose_utc_time_is_out_of_range_is_422(live_server, api):
    body = {
        "title": "t",
        "tlp": "amber",
        "collection": live_server.collection().alias,
        "first_seen": "9999-12-31T23:59:59-05:00",
    }
    error = problem(api.post("/api/v1/incidents", json=body), 422)
    assert "first_seen" in error["detail"] and "out of range" in error["detail"], error


@pytest.mark.parametrize("until", ["0001-01-01", "0001-01-01T00:00:00Z"])
def test_a_report_window_whose_default_start_is_before_year_1_is_400(api, until):
    error = problem(api.get("/api/v1/reports/reciprocity", params={"until": until}), 400)
    assert "since" in error["detail"] and "until" in error["detail"], error


@pytest.mark.parametrize("x", ["\u00e4", "!!!", "AAAA", 123, "A" * 43 + "=", "_" * 44, None])
def test_a_partner_key_that_is_not_an_ed25519_public_key_is_400(api, x):
    # Once stored as given: every signed POST of the partner was then a 500 (thumbprint of "ä").
    slug = f"p-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/partners", json={"slug": slug, "name": "P", "country": "IN"}).status_code == 201
    error = problem(
        api.post(f"/api/v1/partners/{slug}/keys", json={"jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}}), 400
    )
    assert "x" in error["detail"] and "Ed25519" in error["detail"], error


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/api/v1/incidents", b'{"title":"dup","tlp":"red","tlp":"clear","collection":"incidents"}', "tlp"),
        (
            "/api/v1/incidents",
            b'{"title":"dup","tlp":"red","observables":[{"type":"url","type":"x","value":"v"}]}',
            "type",
        ),
        (
            "/api/v1/agreements/check",
            (
                b'{"partner":"cert-in","title":"t","valid_from":"2026-01-01","valid_until":"2027-01-01",'
                b'"status":"draft","status":"active"}'
            ),
            "status",
        ),
        ("/api/v1/partners", b'{"slug":"dup-keys","name":"a","name":"b","country":"IN"}', "name"),
    ],
)
def test_a_duplicate_key_in_a_rest_body_is_400_naming_it(api, path, body, key):
    # Last one won: {"tlp":"red","tlp":"clear"} published at TLP clear.
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    error = problem(response, 400)
    assert f"duplicate key {key!r}" in error["detail"], error


def test_every_rest_route_parses_its_body_strictly(live_server) -> None:
    from fastapi.routing import APIRoute

    from exchange.context import StrictJsonRoute
    from exchange.main import create_app

    app = create_app(live_server.settings)
    loose = [
        r.path
        for r in app.routes
        if isinstance(r, APIRoute) and r.body_field is not None and not isinstance(r, StrictJsonRoute)
    ]
    assert loose == []


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59.5Z"])
def test_a_first_seen_before_year_1000_is_written_with_four_digits(live_server, api, moment):
    # strftime("%Y") writes year 1 as "1" on Linux: the server then refused its own indicator's
    # valid_from "1-01-01T00:00:00.000Z" (422).
    body = {
        "title": "t",
        "tlp": "amber",
        "collection": live_server.collection().alias,
        "first_seen": moment,
        "observables": [{"type": "domain-name", "value": f"early-{uuid.uuid4().hex[:8]}.example"}],
    }
    response = api.post("/api/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    incident = api.get(f"/api/v1/objects/{response.json()['incident']}").json()
    written = [
        ext["first_seen"]
        for ext in incident["versions"][-1]["object"]["extensions"].values()
        if "first_seen" in ext
    ]
    assert [w[:19] for w in written] == [moment[:19]], incident


def test_a_small_order_partner_key_is_400_and_a_second_key_under_one_kid_is_409(api):
    # Found by an outside probe: the identity point was accepted, and then a signature of 0x01
    # followed by zeros passed require_signature for any submission; a second key under a kid
    # already used was stored though the first key of that kid is the one that checks.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from exchange.signing.keys import b64url

    slug = f"p-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/partners", json={"slug": slug, "name": "P", "country": "IN"}).status_code == 201
    identity = b64url((1).to_bytes(32, "little"))
    weak = {"kty": "OKP", "crv": "Ed25519", "x": identity, "kid": "weak"}
    error = problem(api.post(f"/api/v1/partners/{slug}/keys", json={"jwk": weak}), 400)
    assert "small order" in error["detail"], error

    def key(kid: str | None) -> dict:  # type: ignore[type-arg]
        raw = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)} | ({"kid": kid} if kid else {})

    assert api.post(f"/api/v1/partners/{slug}/keys", json={"jwk": key("rot-1")}).status_code == 200
    again = problem(api.post(f"/api/v1/partners/{slug}/keys", json={"jwk": key("rot-1")}), 409)
    assert "rot-1" in again["detail"], again
    assert api.post(f"/api/v1/partners/{slug}/keys", json={"jwk": key("rot-2")}).status_code == 200


@pytest.mark.parametrize("collection", [{"a": 1}, [["x"]], [], 5, ""])
def test_a_revocation_whose_collection_is_not_a_name_is_422(api, collection):
    # Found by an outside probe: a dict or nested list was a 500, [] revoked in every collection.
    target = f"indicator--{uuid.uuid4()}"
    error = problem(api.post(f"/api/v1/objects/{target}/revoke", json={"collection": collection}), 422)
    assert "collection" in error["detail"], error


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"name": ' + "[" * 300 + "]" * 300 + "}", "nested deeper than 64"),
        ('{"name": NaN}', "NaN"),
    ],
)
def test_a_rest_body_is_read_as_strict_json(api, body, says):
    # Found by an outside probe: a REST version 300 levels deep was stored, and the object's
    # page was then a 500 for good; 2,000 levels was an anonymous "error parsing the body".
    response = api.post(
        f"/api/v1/objects/indicator--{uuid.uuid4()}/versions",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    error = problem(response, 400)
    assert says in error["detail"], error
