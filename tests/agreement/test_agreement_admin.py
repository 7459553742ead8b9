"""Administrators manage partners, credentials and agreements over the REST API (real server)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from exchange.agreement.models import AgreementVersion
from exchange.intel.ingest import ingest
from exchange.intel.models import Collection
from tests.support.partners import agreement_doc
from tests.support.taxii import TAXII

pytestmark = pytest.mark.live

TLP = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
}
LEVEL_OF = {mid: ("clear" if level == "white" else level) for level, mid in TLP.items()}
TS = "2026-01-01T00:00:00.000Z"


def api(live_server, key: str | None) -> httpx.Client:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=f"{live_server.url}/api/v1", headers=headers, timeout=30)


@pytest.fixture
def rest(live_server, admin):  # type: ignore[no-untyped-def]
    with api(live_server, admin[1]) as client:
        yield client


def new_partner(rest: httpx.Client) -> tuple[str, tuple[str, str]]:
    slug = f"p-{uuid.uuid4().hex[:8]}"
    response = rest.post("/partners", json={"slug": slug, "name": f"CERT {slug}", "country": "in"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["partner"]["slug"] == slug and body["partner"]["country"] == "IN"
    assert body["partner"]["status"] == "active"
    assert body["key"].startswith(body["credential_id"] + ".")
    return slug, (body["credential_id"], body["key"])


def put_agreement(rest: httpx.Client, doc: dict[str, Any]) -> dict[str, Any]:
    """PUT an agreement that must be accepted; the answer."""
    response = rest.put("/agreements", json=doc)
    assert response.status_code == 200, response.text
    return response.json()


def obj(kind: str, level: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{uuid.uuid4()}",
        "created": TS,
        "modified": TS,
        **extra,
    }
    if kind == "indicator":
        body |= {
            "name": "i",
            "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix",
            "valid_from": TS,
        }
    elif kind == "malware":
        body |= {"name": "m", "is_family": False}
    if level is not None:
        body["object_marking_refs"] = [TLP[level]]
    return body


def store(live_server, coll: Collection, objects: list[dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    with live_server.session() as db:
        result = ingest(db, collection=db.get(Collection, coll.pk), objects=objects, origin="analyst")
        assert result.failures == [], result.failures


def pull(live_server, cred: tuple[str, str], coll: Collection) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    served: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    with httpx.Client(auth=cred, headers={"Accept": TAXII}, timeout=30) as client:
        for _ in range(100):
            response = client.get(live_server.collection_url(coll) + "objects/", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            served += body.get("objects", [])
            if not body.get("more"):
                return served
            params = {"limit": 2, "next": body["next"]}
    raise AssertionError("paging does not end")


def taxii_status(live_server, cred: tuple[str, str], coll: Collection) -> int:  # type: ignore[no-untyped-def]
    return httpx.get(
        live_server.collection_url(coll) + "objects/", auth=cred, headers={"Accept": TAXII}, timeout=30
    ).status_code


def versions(rest: httpx.Client, slug: str) -> tuple[int, Any]:
    response = rest.get(f"/agreements/{slug}/versions")
    return response.status_code, response.json() if response.status_code == 200 else None


def test_apply_version_history_and_diff(live_server, rest, admin):
    coll = live_server.collection()
    slug, _ = new_partner(rest)
    doc = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green", "embargo": "24h"})

    first = put_agreement(rest, doc)
    assert first["version"] == 1 and first["changed"] is True

    again = rest.put("/agreements", json=doc)
    assert again.json() == {"partner": slug, "version": 1, "changed": False, "changes": [], "warnings": []}
    # The same agreement spelt differently is not a change either.
    same = rest.put("/agreements", json=doc | {"read": doc["read"] | {"embargo": "PT24H"}})
    assert same.json()["changed"] is False

    amber = doc | {"read": doc["read"] | {"max_tlp": "amber"}}
    second = put_agreement(rest, amber)
    assert second["version"] == 2 and second["changed"] is True
    assert second["changes"] == [{"path": "read.max_tlp", "old": "green", "new": "amber"}]

    status, listed = versions(rest, slug)
    assert status == 200
    assert [v["version"] for v in listed] == [1, 2]
    assert {v["created_by"] for v in listed} == {admin[0]}
    assert [v["document"]["read"]["max_tlp"] for v in listed] == ["green", "amber"]

    diff = rest.get(f"/agreements/{slug}/diff", params={"from": 1, "to": 2})
    assert diff.status_code == 200
    assert diff.json() == [{"path": "read.max_tlp", "old": "green", "new": "amber"}]
    assert rest.get(f"/agreements/{slug}").json()["read"]["max_tlp"] == "amber"


def test_preview_matches_what_the_partner_pulls(live_server, rest):
    one, two = live_server.collection(default_tlp="green"), live_server.collection(default_tlp="amber")
    store(
        live_server,
        one,
        [
            obj("indicator", "clear", confidence=90),
            obj("indicator", "green", confidence=90),
            obj("malware", "white", confidence=90),
            obj("malware", None, confidence=90),
            obj("indicator", "amber", confidence=90),
            obj("indicator", "red", confidence=90),
            obj("indicator", "green", confidence=10),
            obj("identity", "green", name="x", confidence=90),
        ],
    )
    store(
        live_server,
        two,
        [
            obj("indicator", None, confidence=95),
            obj("malware", "clear", confidence=95),
            obj("malware", "amber+strict", confidence=95),
            obj("indicator", "green"),
        ],
    )
    slug, cred = new_partner(rest)
    read = {
        "collections": [one.alias, two.alias],
        "max_tlp": "amber",
        "min_confidence": 50,
        "types": ["indicator", "malware"],
    }
    put_agreement(rest, agreement_doc(slug, read=read))

    response = rest.get(f"/agreements/{slug}/preview")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["partner"] == slug and report["previewed_as_active"] is False
    by_alias = {c["collection"]: c for c in report["collections"]}
    total = 0
    for coll in (one, two):
        served = pull(live_server, cred, coll)
        default = coll.default_tlp
        levels = Counter(
            LEVEL_OF[o["object_marking_refs"][0]] if "object_marking_refs" in o else default for o in served
        )
        shown = by_alias[coll.alias]
        assert shown["granted"] is True
        assert shown["total"] == len(served)
        assert shown["by_type"] == dict(Counter(o["type"] for o in served))
        assert shown["by_tlp"] == dict(levels)
        assert len(shown["sample"]) == min(5, len(served))
        assert {o["id"] for o in shown["sample"]} <= {o["id"] for o in served}
        total += len(served)
    assert report["total"] == total == 7  # 5 of the first collection, 2 of the second
    assert all("red" not in c["by_tlp"] for c in report["collections"])
    assert TLP["red"] not in orjson.dumps(report).decode()


def test_preview_of_a_draft_stores_nothing(live_server, rest):
    coll = live_server.collection(default_tlp="green")
    store(live_server, coll, [obj("indicator", "green"), obj("indicator", "amber"), obj("malware", "green")])
    slug, cred = new_partner(rest)
    current = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "clear"})
    assert put_agreement(rest, current)["version"] == 1
    before = versions(rest, slug)

    draft = agreement_doc(
        slug, read={"collections": [coll.alias], "max_tlp": "amber", "types": ["indicator"]}, status="draft"
    )
    response = rest.post("/agreements/preview", json=draft)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["previewed_as_active"] is True
    assert report["total"] == 2
    assert report["collections"][0]["by_type"] == {"indicator": 2}
    assert report["collections"][0]["by_tlp"] == {"green": 1, "amber": 1}

    assert versions(rest, slug) == before
    assert rest.get(f"/agreements/{slug}").json() == current | {
        "read": current["read"] | {"redact": [], "anonymize_source": False}
    }
    assert pull(live_server, cred, coll) == []  # still under the stored clear-only agreement


BAD = {
    "unknown top-level field": (lambda d, c: d | {"sharing": "all"}, "sharing", "unknown field"),
    "unknown field in read": (
        lambda d, c: d | {"read": d["read"] | {"max_tlpp": "red"}},
        "read.max_tlpp",
        "unknown field",
    ),
    "unknown collection": (
        lambda d, c: d | {"read": d["read"] | {"collections": [c, "nope-nope"]}},
        "read.collections[1]",
        "unknown collection 'nope-nope'",
    ),
    "tlp purple": (lambda d, c: d | {"read": d["read"] | {"max_tlp": "purple"}}, "read.max_tlp", "'purple'"),
    "end before start": (
        lambda d, c: d | {"valid_from": "2025-06-01", "valid_until": "2025-05-31"},
        "valid_until",
        "before valid_from",
    ),
    "bad embargo": (
        lambda d, c: d | {"read": d["read"] | {"embargo": "3 fortnights"}},
        "read.embargo",
        "3 fortnights",
    ),
    "unknown partner": (
        lambda d, c: d | {"partner": "no-such-partner"},
        "partner",
        "unknown partner 'no-such-partner'",
    ),
    "a key in the push URL": (
        lambda d, c: (
            d
            | {"push": {"url": "https://127.0.0.1:9/taxii2/root/collections/5f0a/?apikey=k3y", "every": "1h"}}
        ),
        "push.url",
        "PUT /api/v1/partners/{slug}/push-auth",
    ),
    "a list, not an object": (lambda d, c: [d], "body", ""),
    "a string, not an object": (lambda d, c: "agreement", "body", ""),
    "null, not an object": (lambda d, c: None, "body", ""),
}


def agreed_partner(live_server, rest: httpx.Client) -> tuple[str, dict[str, Any], Collection]:  # type: ignore[no-untyped-def]
    coll = live_server.collection()
    slug, _ = new_partner(rest)
    doc = agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"})
    put_agreement(rest, doc)
    return slug, doc, coll


def send_json(rest: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    # orjson, not httpx's json=: `None` must go out as the JSON text null.
    return rest.request(
        method, path, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )


@pytest.fixture(scope="module")
def agreed(live_server, admin) -> tuple[str, dict[str, Any], Collection]:  # type: ignore[no-untyped-def]
    """One partner with a stored agreement, shared by the tests that must change nothing."""
    with api(live_server, admin[1]) as client:
        return agreed_partner(live_server, client)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_agreement_is_a_422_naming_the_field_and_changes_nothing(rest, agreed, case):
    slug, doc, coll = agreed
    before = versions(rest, slug)
    make, field, reason = BAD[case]
    for method, path in (("PUT", "/agreements"), ("POST", "/agreements/preview")):
        response = send_json(rest, method, path, make(doc, coll.alias))
        assert response.status_code == 422, (method, response.text)
        if field == "body":  # FastAPI's own check of the request body
            assert response.json()["errors"][0]["loc"] == ["body"], response.text
            continue
        problems = response.json()["problems"]
        assert any(p["field"] == field and reason in p["reason"] for p in problems), problems
        assert field in response.json()["detail"] and reason in response.json()["detail"]
    assert versions(rest, slug) == before
    assert rest.get(f"/agreements/{slug}").json() == doc | {
        "read": doc["read"] | {"redact": [], "anonymize_source": False}
    }


def test_a_push_url_with_a_query_never_reaches_versions_pages_or_the_audit_trail(  # type: ignore[no-untyped-def]
    live_server, rest
) -> None:
    slug, doc, _ = agreed_partner(live_server, rest)
    secret = "SECRETPUSHQ" + uuid.uuid4().hex
    collection = "https://127.0.0.1:9/taxii2/root/collections/5f0a/"
    for query in (f"?apikey={secret}", f"?pwd={secret}", f"?p={secret}&format=json"):
        for method, path in (("PUT", "/agreements"), ("POST", "/agreements/check")):
            response = send_json(
                rest, method, path, doc | {"push": {"url": collection + query, "every": "1h"}}
            )
            if method == "PUT":
                assert response.status_code == 422, response.text
            assert "push-auth" in response.text and secret not in response.text, response.text
    assert len(versions(rest, slug)[1]) == 1
    # The same collection URL without a query is fine.
    put_agreement(rest, doc | {"push": {"url": collection, "every": "1h"}})
    assert len(versions(rest, slug)[1]) == 2
    trail = rest.get("/audit", params={"limit": 1000})
    assert trail.status_code == 200 and slug in trail.text
    assert secret not in trail.text


def non_admin_calls(slug: str, doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        ("PUT", "/agreements", doc),
        ("GET", "/agreements", None),
        ("GET", f"/agreements/{slug}", None),
        ("GET", f"/agreements/{slug}/versions", None),
        ("GET", f"/agreements/{slug}/preview", None),
        ("POST", "/agreements/preview", doc),
        ("GET", "/partners", None),
        ("POST", "/partners", {"slug": "p-sneaky", "name": "x", "country": "IN"}),
        ("PATCH", f"/partners/{slug}", {"status": "suspended"}),
        ("POST", f"/partners/{slug}/credentials", {}),
        ("GET", f"/partners/{slug}/credentials", None),
    ]


def test_only_administrators_manage_partners_and_agreements(live_server, rest, agreed):
    slug, doc, _ = agreed
    before = versions(rest, slug)
    analyst = live_server.credential("analyst")
    _, partner_cred = new_partner(rest)
    changed = doc | {"read": doc["read"] | {"max_tlp": "amber+strict"}}
    # A wrong key is left to tests/audit/test_audit.py (it is also audited).
    for who, key, expected in (
        ("analyst", analyst[1], 403),
        ("partner", partner_cred[1], 403),
        ("no credential", None, 401),
    ):
        with api(live_server, key) as client:
            for method, path, body in non_admin_calls(slug, changed):
                response = client.request(method, path, json=body)
                assert response.status_code == expected, (who, method, path, response.text)
                assert "CERT " not in response.text and "max_tlp" not in response.text  # nothing leaks
                if expected == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert versions(rest, slug) == before
    assert rest.get(f"/partners/{slug}").json()["status"] == "active"
    assert rest.get("/partners/p-sneaky").status_code == 404
    assert len(rest.get(f"/partners/{slug}/credentials").json()) == 1


def test_what_does_not_exist_is_a_404_naming_it(live_server, rest):
    slug, _, _ = agreed_partner(live_server, rest)
    for path in (
        "/agreements/no-such-partner",
        "/agreements/no-such-partner/versions",
        "/agreements/no-such-partner/preview",
        "/partners/no-such-partner",
    ):
        response = rest.get(path)
        assert response.status_code == 404, (path, response.text)
        assert "no-such-partner" in response.json()["detail"]
    response = rest.get(f"/agreements/{slug}/diff", params={"from": 1, "to": 3})
    assert response.status_code == 404 and "version 3" in response.json()["detail"]
    response = rest.post("/credentials/cred-0000000000000000/revoke")
    assert response.status_code == 404 and "cred-0000000000000000" in response.json()["detail"]
    response = rest.patch(f"/partners/{slug}", json={"status": "gone"})
    assert response.status_code == 422 and "status" in response.text


def test_suspending_a_partner_shuts_its_taxii_access(live_server, rest):
    coll = live_server.collection(default_tlp="green")
    store(live_server, coll, [obj("indicator", "green")])
    slug, cred = new_partner(rest)
    put_agreement(rest, agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"}))
    assert len(pull(live_server, cred, coll)) == 1

    response = rest.patch(f"/partners/{slug}", json={"status": "suspended"})
    assert response.status_code == 200 and response.json()["status"] == "suspended"
    assert taxii_status(live_server, cred, coll) == 401
    assert httpx.get(f"{live_server.url}/taxii2/", auth=cred, headers={"Accept": TAXII}).status_code == 401

    assert rest.patch(f"/partners/{slug}", json={"status": "gone"}).status_code == 422
    assert rest.get(f"/partners/{slug}").json()["status"] == "suspended"
    assert rest.patch(f"/partners/{slug}", json={"status": "active"}).json()["status"] == "active"
    assert taxii_status(live_server, cred, coll) == 200


def test_credentials_create_list_and_revoke(live_server, rest):
    coll = live_server.collection(default_tlp="green")
    slug, first = new_partner(rest)
    put_agreement(rest, agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"}))

    created = rest.post(f"/partners/{slug}/credentials", json={"name": "misp"})
    assert created.status_code == 201, created.text
    second = (created.json()["id"], created.json()["key"])
    assert second[1].startswith(second[0] + ".")
    assert taxii_status(live_server, second, coll) == 200

    listed = rest.get(f"/partners/{slug}/credentials")
    assert listed.status_code == 200
    assert [(c["id"], c["role"], c["revoked_at"]) for c in listed.json()] == [
        (first[0], "partner", None),
        (second[0], "partner", None),
    ]
    assert second[1] not in listed.text and first[1] not in listed.text and "scrypt" not in listed.text

    revoked = rest.post(f"/credentials/{second[0]}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert taxii_status(live_server, second, coll) == 401
    with api(live_server, second[1]) as client:
        assert client.get("/partners").status_code == 401
    assert taxii_status(live_server, first, coll) == 200  # the other credential still works


def test_taxii_basic_accepts_the_partner_slug_as_user_name(live_server, rest):
    coll = live_server.collection(default_tlp="green")
    slug, cred = new_partner(rest)
    other_slug, other = new_partner(rest)
    for partner in (slug, other_slug):
        put_agreement(rest, agreement_doc(partner, read={"collections": [coll.alias], "max_tlp": "green"}))
    assert taxii_status(live_server, cred, coll) == 200
    # Another partner's key never opens this partner's account, whatever the user name says.
    assert taxii_status(live_server, (slug, other[1]), coll) == 401
    assert taxii_status(live_server, (slug, cred[1] + "x"), coll) == 401
    assert taxii_status(live_server, (slug, cred[1]), coll) == 200


def test_a_write_answered_200_is_stored(live_server, rest, admin):
    """A 2xx means committed: a commit that fails must not have been answered with success already."""
    slug, doc, _ = agreed_partner(live_server, rest)
    marker = f"commit fails {uuid.uuid4()}"

    doomed: set[int] = set()
    refused = threading.Event()

    def note(session: Session, _context: Any) -> None:
        if any(isinstance(row, AgreementVersion) and marker in row.document for row in session.new):
            doomed.add(id(session))

    def failing_commit(session: Session) -> None:
        if id(session) in doomed:  # the database refuses this one commit (full disk, lost link, ...)
            refused.set()
            raise RuntimeError("the database refused the commit")

    event.listen(Session, "after_flush", note)
    event.listen(Session, "before_commit", failing_commit)
    try:
        response = rest.put("/agreements", json=doc | {"title": marker})
    except httpx.TransportError:
        response = None  # no answer at all is honest too
    finally:
        refused.wait(timeout=5)  # the commit may come after the answer: keep refusing until then
        event.remove(Session, "after_flush", note)
        event.remove(Session, "before_commit", failing_commit)
    assert refused.is_set(), "the server never tried to commit the change"
    with api(live_server, admin[1]) as fresh:  # the server may have dropped the other connection
        stored = [v["document"]["title"] for v in versions(fresh, slug)[1]]
    if response is not None and response.is_success:
        assert marker in stored, f"answered {response.status_code} {response.text} but never stored"
    else:
        assert marker not in stored


def test_a_type_name_stix_does_not_define_is_applied_with_a_warning(live_server, rest):
    coll = live_server.collection()
    slug, _ = new_partner(rest)
    doc = agreement_doc(
        slug, read={"collections": [coll.alias], "max_tlp": "green", "types": ["indicator", "malwre"]}
    )
    response = send_json(rest, "PUT", "/agreements", doc)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1
    (warning,) = response.json()["warnings"]
    assert warning.startswith(
        "read.types[1]: 'malwre' is not a type STIX 2.1 defines; did you mean 'malware'?"
    )
    plain = send_json(rest, "PUT", "/agreements", doc | {"read": doc["read"] | {"types": ["indicator"]}})
    assert plain.json()["warnings"] == []
