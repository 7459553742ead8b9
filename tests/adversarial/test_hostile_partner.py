"""A hostile partner: it reads with every endpoint and filter, writes to learn or change what
others own, and defines markings of its own. Nothing of another party may leak or change."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from exchange.disclosure.models import Delivery, Disclosure
from tests.support.partners import agreement_doc
from tests.support.stix import AMBER, GREEN, T0, indicator_on, sdo
from tests.support.taxii import TAXII, ids, submit

pytestmark = pytest.mark.live


def statement_marking(marking_id: str, statement: str) -> dict[str, Any]:
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id,
        "created": T0,
        "definition_type": "statement",
        "definition": {"statement": statement},
    }


def test_a_statement_marking_a_partner_defines_does_not_lower_another_partys_object(
    live_server, http, partners
):
    # The CERT's object names a statement marking nobody has stored yet: it is unmarked (the
    # collection's amber default) and withheld, since its marking cannot be followed.
    shared = live_server.collection(default_tlp="amber")
    inbox = live_server.collection(default_tlp="green")
    pending = f"marking-definition--{uuid.uuid4()}"
    secret = sdo("malware", GREEN, name="amber by default", is_family=False)
    secret["object_marking_refs"] = [pending]
    submit(http, live_server.collection_url(shared), [secret])
    read = {"collections": [shared.alias, inbox.alias], "max_tlp": "green"}
    _, cred = partners.add(lambda s: agreement_doc(s, read=read, write={"collections": [inbox.alias]}))
    assert secret["id"] not in ids(live_server.collection_url(shared), cred)

    # The partner defines that marking as TLP:CLEAR, where it may write.
    status = submit(
        None, live_server.collection_url(inbox), [statement_marking(pending, "TLP:CLEAR")], auth=cred
    )
    assert status["success_count"] == 1
    assert secret["id"] not in ids(live_server.collection_url(shared), cred)


def test_a_partner_key_opens_nothing_of_the_rest_api(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    obj = indicator_on("192.0.2.44")
    submit(http, live_server.collection_url(coll), [obj])
    bearer = {"Authorization": f"Bearer {cred[1]}"}
    probes = [
        ("GET", "/api/v1/partners"),
        ("GET", f"/api/v1/partners/{slug}"),
        ("GET", f"/api/v1/partners/{slug}/credentials"),
        ("GET", "/api/v1/agreements"),
        ("GET", f"/api/v1/agreements/{slug}"),
        ("GET", f"/api/v1/agreements/{slug}/preview"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/audit/verify"),
        ("GET", "/api/v1/audit/checkpoint"),
        ("GET", f"/api/v1/objects/{obj['id']}"),
        ("GET", f"/api/v1/objects/{obj['id']}/sightings"),
        ("GET", f"/api/v1/objects/{obj['id']}/recipients"),
        ("GET", "/api/v1/observables?value=192.0.2.44"),
        ("GET", f"/api/v1/exports/{coll.alias}?partner={slug}"),
        ("GET", "/api/v1/feeds"),
        ("GET", f"/api/v1/push/{slug}"),
        ("GET", "/api/v1/scheduler"),
        ("GET", "/metrics"),
        ("POST", f"/api/v1/objects/{obj['id']}/revoke"),
        ("POST", f"/api/v1/bundles?collection={coll.alias}"),
        ("POST", "/api/v1/users"),
        ("POST", f"/api/v1/partners/{slug}/credentials"),
        ("PUT", "/api/v1/agreements"),
    ]
    opened = []
    for auth in ({"headers": bearer}, {"auth": cred}):
        for method, path in probes:
            response = httpx.request(method, live_server.url + path, json={}, timeout=30, **auth)
            if response.status_code not in (401, 403):
                opened.append((method, path, response.status_code))
    assert opened == []


def test_another_partners_status_cursor_and_objects_stay_out_of_reach(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    read = {"collections": [coll.alias], "max_tlp": "green"}
    write = {"collections": [coll.alias]}
    _, alice = partners.add(lambda s: agreement_doc(s, read=read, write=write))
    _, mallory = partners.add(lambda s: agreement_doc(s, read=read))
    submit(http, url, [indicator_on(f"192.0.2.{n}") for n in range(1, 4)])
    status = submit(None, url, [indicator_on("192.0.2.99")], auth=alice)
    status_url = f"{live_server.api_root}status/{status['id']}/"
    for method in ("GET", "HEAD"):
        assert httpx.request(method, status_url, auth=mallory, headers={"Accept": TAXII}).status_code == 404
    assert httpx.get(status_url, auth=alice, headers={"Accept": TAXII}).status_code == 200

    first = httpx.get(url + "objects/", params={"limit": 1}, auth=alice, headers={"Accept": TAXII})
    token = first.json()["next"]
    stolen = httpx.get(url + "objects/", params={"next": token}, auth=mallory, headers={"Accept": TAXII})
    assert stolen.status_code == 400
    other_filter = httpx.get(
        url + "objects/",
        params={"next": token, "match[type]": "malware"},
        auth=alice,
        headers={"Accept": TAXII},
    )
    assert other_filter.status_code == 400
    manifest = httpx.get(url + "manifest/", params={"next": token}, auth=alice, headers={"Accept": TAXII})
    assert manifest.status_code == 400


def test_a_hidden_object_is_hidden_through_every_endpoint_and_filter(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    hidden = indicator_on("192.0.2.200", AMBER)
    # An object whose newer version is amber: the partner sees the green one only.
    shifting = indicator_on("192.0.2.201", GREEN)
    newer = shifting | {"modified": "2026-03-01T00:00:00.000Z", "object_marking_refs": [AMBER]}
    submit(http, url, [hidden, shifting, newer])
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))

    def get(path: str, **params: str) -> httpx.Response:
        return httpx.get(url + path, params=params, auth=cred, headers={"Accept": TAXII})

    oid = hidden["id"]
    assert get(f"objects/{oid}/").status_code == 404
    assert get(f"objects/{oid}/versions/").status_code == 404
    for version in ("all", "first", "last", T0):
        assert get(f"objects/{oid}/", **{"match[version]": version}).status_code == 404
        listed = get("objects/", **{"match[id]": oid, "match[version]": version})
        assert listed.status_code == 200 and "objects" not in listed.json()
        manifest = get("manifest/", **{"match[id]": oid, "match[version]": version})
        assert manifest.status_code == 200 and "objects" not in manifest.json()
    everything = get("objects/", **{"match[version]": "all", "added_after": "1970-01-01T00:00:00Z"})
    served = [(o["id"], o["modified"]) for o in everything.json()["objects"]]
    assert served == [(shifting["id"], T0)]
    versions = get(f"objects/{shifting['id']}/versions/").json()
    assert versions["versions"] == [T0]
    future = get("objects/", added_after="2999-01-01T00:00:00Z")
    assert future.status_code == 200 and "objects" not in future.json()
    assert future.headers["X-TAXII-Date-Added-Last"].startswith("2999-01-01")


def test_anonymised_sources_are_not_named_by_other_references(live_server, http, partners):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    source = f"identity--{uuid.uuid4()}"
    seen = indicator_on("192.0.2.150")
    source_identity = sdo("identity", GREEN, name="the source CERT", identity_class="organization")
    source_identity["id"] = source
    sighting = sdo(
        "sighting",
        GREEN,
        created_by_ref=source,
        sighting_of_ref=seen["id"],
        where_sighted_refs=[source],
        observed_data_refs=[],
    )
    sighting.pop("observed_data_refs")
    submit(http, url, [seen, source_identity, sighting])
    read = {"collections": [coll.alias], "max_tlp": "green", "anonymize_source": True}
    _, cred = partners.add(lambda s: agreement_doc(s, read=read))
    served = httpx.get(
        url + "objects/", params={"match[type]": "sighting"}, auth=cred, headers={"Accept": TAXII}
    )
    (got,) = served.json()["objects"]
    assert got["created_by_ref"] == live_server.settings.identity_id
    assert source not in served.text


@pytest.mark.parametrize("embargo", [None, "1h"])
def test_resume_points_at_the_ends_of_time_are_answers_not_errors(live_server, http, partners, embargo):
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    obj = indicator_on("192.0.2.160")
    submit(http, url, [obj])
    read = {"collections": [coll.alias], "max_tlp": "green"} | ({"embargo": embargo} if embargo else {})
    _, cred = partners.add(lambda s: agreement_doc(s, read=read))
    problems = []
    for stamp in ("0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"):
        for path in ("objects/", "manifest/", f"objects/{obj['id']}/", f"objects/{obj['id']}/versions/"):
            for method in ("GET", "HEAD"):
                response = httpx.request(
                    method, url + path, params={"added_after": stamp}, auth=cred, headers={"Accept": TAXII}
                )
                if response.status_code >= 500:
                    problems.append((method, path, stamp, response.status_code))
    assert problems == []


def test_a_head_request_delivers_nothing_and_records_nothing(live_server, http, partners):
    """HEAD is GET without the body: the ledger must not say a partner received what it was
    never sent (a revocation it holds, on paper only, would never be pushed to it)."""
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    objs = [indicator_on(f"192.0.2.{n}") for n in (170, 171)]
    submit(http, url, objs)
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))

    def recorded() -> tuple[int, int]:
        with live_server.session() as db:
            deliveries = select(Delivery.pk).where(Delivery.collection_pk == coll.pk)
            rows = db.scalar(
                select(func.count()).select_from(Disclosure).where(Disclosure.delivery_pk.in_(deliveries))
            )
            return int(db.scalar(select(func.count()).select_from(deliveries.subquery())) or 0), int(
                rows or 0
            )

    paths = ("objects/", f"objects/{objs[0]['id']}/", f"objects/{objs[0]['id']}/?match[version]=all")
    for path in paths:
        head = httpx.head(url + path, auth=cred, headers={"Accept": TAXII})
        assert head.status_code == 200 and head.content == b"" and int(head.headers["Content-Length"]) > 0
    assert recorded() == (0, 0)
    got = httpx.get(url + "objects/", auth=cred, headers={"Accept": TAXII})
    assert len(got.json()["objects"]) == 2
    assert recorded() == (1, 2)
