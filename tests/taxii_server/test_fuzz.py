"""Fuzzing what a client can send: never a 5xx, and every error in its interface's shape
(a TAXII error resource under /taxii2, RFC 9457 problem+json under /api/v1), on both databases."""

from __future__ import annotations

import json
import os
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.stix import indicator
from tests.support.taxii import TAXII

pytestmark = pytest.mark.live
# The same examples on every run (CI must not pass by luck); EXCHANGE_FUZZ_RANDOM=1 explores anew.
FUZZ = settings(
    max_examples=int(os.environ.get("EXCHANGE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not os.environ.get("EXCHANGE_FUZZ_RANDOM"),
    database=None if not os.environ.get("EXCHANGE_FUZZ_RANDOM") else settings.default.database,
)
# A partner's requests cost more (visibility SQL, gate, ledger, signature): fewer of them.
PARTNER_FUZZ = settings(FUZZ, max_examples=int(os.environ.get("EXCHANGE_FUZZ_EXAMPLES", "15")))

# Text that has broken servers: NUL and other controls, surrogate-free astral characters,
# separators TAXII gives meaning to, and very long runs.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from(["\x00", ",", "%", "'", '"', "\\", "\n", "é", "\U0001f600", " "]),
        max_size=20,
    ),
    st.sampled_from(
        [
            "",
            "last",
            "first",
            "all",
            "2.1",
            "indicator",
            f"indicator--{uuid.uuid4()}",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00." + "9" * 30 + "Z",
            "9" * 31,
            "-1",
            "a" * 5000,
            ",".join(["x-t"] * 1200),
        ]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def taxii_shaped(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/taxii+json"), response.text[:300]
        body = response.json()
        assert body["http_status"] == str(response.status_code) and body["title"], body


def problem_shaped(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text[:300]
        body = response.json()
        assert body["status"] == response.status_code and body["title"], body


@pytest.fixture(scope="module")
def target(live_server, admin):  # type: ignore[no-untyped-def]
    """A collection holding one object, for the fuzzers to aim at."""
    coll = live_server.collection()
    obj = indicator(1)
    with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=60) as client:
        posted = client.post(
            live_server.collection_url(coll) + "objects/",
            content=json.dumps({"objects": [obj]}),
            headers={"Content-Type": TAXII},
        )
        assert posted.status_code == 202
    return live_server.collection_url(coll), obj["id"], coll.alias


# The TAXII query parameters the fuzzers draw from, and the endpoints they ask.
QUERY_PARAMETERS = [
    "added_after",
    "match[id]",
    "match[type]",
    "match[version]",
    "match[spec_version]",
    "next",
    "limit",
]
ENDPOINTS = ["objects/", "manifest/", "objects/{id}/", "objects/{id}/versions/"]


@FUZZ
@given(
    params=st.dictionaries(st.sampled_from([*QUERY_PARAMETERS, "x"]), nasty_text, max_size=4),
    endpoint=st.sampled_from(ENDPOINTS),
)
def test_taxii_query_strings(live_server, http, target, params: dict[str, str], endpoint: str) -> None:
    url, stix_id, _ = target
    taxii_shaped(http.get(url + endpoint.format(id=stix_id), params=params))


@pytest.fixture(scope="module")
def partner(live_server, target):  # type: ignore[no-untyped-def]
    """A partner whose agreement reads and writes the target collection with every filter set:
    its queries run the visibility SQL, the gate and the ledger, not the staff path."""
    from exchange.agreement import service as agreement_service
    from exchange.partner import service as partner_service

    _, _, alias = target
    slug = f"fz-{uuid.uuid4().hex[:8]}"
    today = date.today()
    doc = {
        "partner": slug,
        "title": "fuzz",
        "valid_from": (today - timedelta(days=1)).isoformat(),
        "valid_until": (today + timedelta(days=9)).isoformat(),
        "status": "active",
        "read": {
            "collections": [alias],
            "max_tlp": "amber",
            "types": ["indicator", "relationship", "identity"],
            "redact": ["x_c"],
            "anonymize_source": True,
        },
        "write": {"collections": [alias], "types": ["indicator", "note"]},
    }
    with live_server.session() as db:
        _, credential, key = partner_service.create(db, slug=slug, name="F", country="IN", actor="test")
        agreement_service.apply(db, doc, actor="test")
    with httpx.Client(auth=(credential.id, key), headers={"Accept": TAXII}, timeout=60) as client:
        yield client


@FUZZ
@given(
    params=st.dictionaries(st.sampled_from(QUERY_PARAMETERS), nasty_text, max_size=4),
    endpoint=st.sampled_from(ENDPOINTS),
    method=st.sampled_from(["GET", "HEAD", "DELETE"]),
)
def test_taxii_partner_queries(live_server, partner, target, params, endpoint: str, method: str) -> None:
    url, stix_id, _ = target
    response = partner.request(method, url + endpoint.format(id=stix_id), params=params)
    if method == "HEAD":
        assert response.status_code < 500 and not response.content
    else:
        taxii_shaped(response)


@PARTNER_FUZZ
@given(body=st.one_of(st.just({"objects": [indicator(7)]}), st.deferred(lambda: envelopes)))
def test_taxii_partner_envelopes(live_server, partner, target, body: Any) -> None:
    url, _, _ = target
    response = partner.post(url + "objects/", content=json.dumps(body), headers={"Content-Type": TAXII})
    taxii_shaped(response)


def test_partner_envelope_with_a_list_as_type_is_a_failure_not_a_500(live_server, partner, target) -> None:
    # Found by test_taxii_partner_envelopes (randomized, PostgreSQL): the write policy hashed
    # the type to look it up in the agreement's types and raised TypeError.
    url, _, _ = target
    for kind in (["indicator"], {"a": 1}):
        body = {"objects": [{**indicator(11), "type": kind}, indicator(12)]}
        response = partner.post(url + "objects/", content=json.dumps(body), headers={"Content-Type": TAXII})
        taxii_shaped(response)
        assert response.status_code == 202, response.text[:300]
        status = response.json()
        assert status["failure_count"] == 1 and status["success_count"] == 1, status


header_values = st.one_of(
    nasty_text.filter(lambda v: "\n" not in v and "\x00" not in v and "\r" not in v),
    st.sampled_from(
        [
            "application/taxii+json",
            "application/taxii+json;version=2.0",
            "application/taxii+json;version=2.1;q=0",
            'application/taxii+json; version="2.1"; charset=latin-1',
            "application/taxii+json;version=2.1;charset=utf-16",
            "*/*;q=abc",
            "text/html, application/*;q=0.1",
            ",,,;;;",
            "application/stix+json;version=2.1",
        ]
    ),
)


@FUZZ
@given(accept=header_values, content_type=header_values, method=st.sampled_from(["GET", "POST", "HEAD"]))
def test_taxii_media_type_headers(
    live_server, http, target, accept: str, content_type: str, method: str
) -> None:
    url, _, _ = target
    headers = {"Accept": accept.encode(), "Content-Type": content_type.encode()}
    try:
        response = http.request(
            method, url + "objects/", headers=headers, content=json.dumps({"objects": [indicator(3)]})
        )
    except httpx.LocalProtocolError:
        assume(False)  # a header value no HTTP client would send (h11 refuses it before the wire)
    if method == "HEAD":
        assert response.status_code < 500 and not response.content
    else:
        taxii_shaped(response)


def _nested(depth: int) -> str:
    return '{"objects": [' + "[" * depth + "]" * depth + "]}"


@FUZZ
@given(
    raw=st.one_of(
        st.integers(min_value=1, max_value=400).map(_nested),
        st.sampled_from(
            [
                '{"objects": [], "objects": []}',
                '{"objects": [{"type": "indicator", "type": "note"}]}',
                '{"objects": [{"x_big": 1e400}]}',
                '{"objects": [{"x_big": 123456789012345678901234567890}]}',
                '{"objects": [{"x_s": "\\ud800"}]}',
                '{"objects": "all"}',
                '{"more": true, "next": "x", "objects": []}',
                "\ufeff" + '{"objects": []}',
                '{"objects": [' + ",".join(['{"type": "note"}'] * 300) + "]}",
            ]
        ),
    )
)
def test_taxii_hostile_json(live_server, http, target, raw: str) -> None:
    url, _, _ = target
    response = http.post(
        url + "objects/", content=raw.encode("utf-8", "surrogatepass"), headers={"Content-Type": TAXII}
    )
    taxii_shaped(response)


@FUZZ
@given(path=nasty_text)
def test_taxii_path_segments(live_server, http, target, path: str) -> None:
    url, _, _ = target
    quoted = httpx.URL(url).copy_with(path=httpx.URL(url).path + "objects/").path
    response = http.get(httpx.URL(url).copy_with(raw_path=(quoted + _quote(path) + "/").encode()))
    taxii_shaped(response)
    taxii_shaped(http.get(f"{live_server.api_root}collections/{_quote(path)}/"))
    taxii_shaped(http.get(f"{live_server.api_root}status/{_quote(path)}/"))


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:2000], safe="") or "x"


def _object(fields: dict[str, Any]) -> dict[str, Any]:
    return {**indicator(0), **fields}


envelopes = st.one_of(
    json_values,
    st.builds(lambda objs: {"objects": objs}, st.lists(json_values, max_size=4)),
    st.builds(
        lambda objs: {"objects": objs},
        st.lists(
            st.builds(
                _object,
                st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "type",
                            "created",
                            "modified",
                            "pattern",
                            "valid_from",
                            "spec_version",
                            "x_c",
                            "labels",
                        ]
                    ),
                    json_values,
                    max_size=3,
                ),
            ),
            min_size=1,
            max_size=4,
        ),
    ),
)


@FUZZ
@given(body=envelopes)
def test_taxii_envelopes(live_server, http, target, body: Any) -> None:
    url, _, _ = target
    response = http.post(url + "objects/", content=json.dumps(body), headers={"Content-Type": TAXII})
    taxii_shaped(response)
    if response.status_code == 202:
        status = response.json()
        assert status["total_count"] == len(body["objects"])
        assert status["success_count"] + status["failure_count"] == status["total_count"]


@FUZZ
@given(raw=st.binary(max_size=200))
def test_taxii_raw_bodies(live_server, http, target, raw: bytes) -> None:
    url, _, _ = target
    taxii_shaped(http.post(url + "objects/", content=raw, headers={"Content-Type": TAXII}))


@pytest.fixture
def api(live_server, admin):  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=60
    ) as client:
        yield client


REST_BODIES = ["/api/v1/incidents", "/api/v1/bundles", "/api/v1/partners", "/api/v1/feeds", "/api/v1/users"]


def _incident(fields: dict[str, Any], alias: str) -> dict[str, Any]:
    base = {
        "title": "t",
        "description": "d",
        "incident_types": ["phishing"],
        "severity": "high",
        "first_seen": "2026-11-20T08:00:00Z",
        "tlp": "amber",
        "collection": alias,
        "observables": [{"type": "url", "value": "http://x.example/"}],
    }
    return {**base, **fields}


@FUZZ
@given(
    path=st.sampled_from(REST_BODIES),
    body=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(
                ["title", "observables", "first_seen", "tlp", "severity", "collection", "objects"]
            ),
            json_values,
            max_size=3,
        ),
    ),
    shaped=st.booleans(),
)
def test_rest_bodies(live_server, api, target, path: str, body: Any, shaped: bool) -> None:
    _, _, alias = target
    if shaped and isinstance(body, dict) and path == "/api/v1/incidents":
        body = _incident(body, alias)
    problem_shaped(api.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"}))


@FUZZ
@given(
    agreement=st.dictionaries(
        st.sampled_from(["partner", "title", "valid_from", "valid_until", "read", "write", "push", "status"]),
        json_values,
        max_size=5,
    ),
    value=nasty_text,
    before=nasty_text,
)
def test_rest_agreements_and_queries(
    live_server, api, target, agreement: Any, value: str, before: str
) -> None:
    _, stix_id, _ = target
    problem_shaped(
        api.put(
            "/api/v1/agreements", content=json.dumps(agreement), headers={"Content-Type": "application/json"}
        )
    )
    problem_shaped(
        api.post(
            "/api/v1/agreements/preview",
            content=json.dumps(agreement),
            headers={"Content-Type": "application/json"},
        )
    )
    problem_shaped(api.get("/api/v1/observables", params={"value": value}))
    problem_shaped(api.get("/api/v1/audit", params={"before": before, "action": value}))
    problem_shaped(api.get(f"/api/v1/objects/{_quote(value)}"))
    problem_shaped(
        api.post(
            f"/api/v1/objects/{stix_id}/versions",
            content=json.dumps({"name": value}),
            headers={"Content-Type": "application/json"},
        )
    )
