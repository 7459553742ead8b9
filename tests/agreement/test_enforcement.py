"""End to end over HTTP: two partners with different agreements each see exactly their share."""

from __future__ import annotations

import uuid
from datetime import UTC

import httpx
import pytest
from taxii2client.v21 import Server, as_pages

from tests.support.partners import agreement_doc
from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, is_error_resource, post

pytestmark = pytest.mark.live

TLP = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    "white1": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "amber1": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
}


def marked(n: int, level: str | None, **extra) -> dict:  # type: ignore[no-untyped-def, type-arg]
    obj = indicator(n, **extra)
    if level is None:
        obj.pop("object_marking_refs")
    else:
        obj["object_marking_refs"] = [TLP[level]]
    return obj


@pytest.fixture
def shared(live_server, http):  # type: ignore[no-untyped-def]
    """A collection holding one object per TLP level, plus unmarked and typed extras."""
    coll = live_server.collection(default_tlp="green")
    objs = {
        "clear": marked(1, "clear", confidence=90),
        "green": marked(2, "green", confidence=90),
        "amber": marked(3, "amber", confidence=90),
        "amber+strict": marked(4, "amber+strict", confidence=90),
        "red": marked(5, "red", confidence=90),
        "white1": marked(6, "white1", confidence=90),
        "amber1": marked(7, "amber1", confidence=90),
        "unmarked": marked(8, None, confidence=90),
        "low": marked(9, "green", confidence=10),
        "noconf": marked(10, "green"),
    }
    status = post(http, live_server.collection_url(coll), envelope(list(objs.values()))).json()
    assert status["success_count"] == len(objs), status
    return coll, objs


def pull(live_server, cred, coll) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    server = Server(f"{live_server.url}/taxii2/", user=cred[0], password=cred[1])
    collection = next(c for c in server.default.collections if c.id == coll.id)
    got = []
    for page in as_pages(collection.get_objects, per_request=3):
        got += page.get("objects", [])
    return got


def test_two_partners_each_see_exactly_their_share(live_server, partners, shared):
    coll, objs = shared
    read_amber = {"collections": [coll.alias], "max_tlp": "amber"}
    read_strict = {"collections": [coll.alias], "max_tlp": "amber+strict", "min_confidence": 50}
    _, amber = partners.add(lambda s: agreement_doc(s, read=read_amber))
    _, strict = partners.add(lambda s: agreement_doc(s, read=read_strict))
    seen_amber = {o["id"] for o in pull(live_server, amber, coll)}
    seen_strict = {o["id"] for o in pull(live_server, strict, coll)}
    ids = {k: v["id"] for k, v in objs.items()}
    assert seen_amber == {
        ids[k] for k in ("clear", "green", "amber", "white1", "amber1", "unmarked", "low", "noconf")
    }
    assert seen_strict == {
        ids[k] for k in ("clear", "green", "amber", "amber+strict", "white1", "amber1", "unmarked")
    }
    assert ids["red"] not in seen_amber | seen_strict


def test_partner_cannot_learn_of_ungranted_collections(live_server, partners, shared, http):
    coll, _ = shared
    hidden = live_server.collection()
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))
    client = httpx.Client(auth=cred, headers={"Accept": TAXII})
    listed = client.get(f"{live_server.api_root}collections/").json()["collections"]
    assert [c["id"] for c in listed] == [coll.id]
    assert listed[0]["can_read"] is True and listed[0]["can_write"] is False
    for path in ("", "objects/", "manifest/", f"objects/{uuid.uuid4()}/"):
        is_error_resource(client.get(live_server.collection_url(hidden) + path), 404)
    # Its existence does not leak through POST either.
    is_error_resource(post(client, live_server.collection_url(hidden), envelope([indicator()])), 404)
    # Readable but not writable: 403.
    is_error_resource(post(client, live_server.collection_url(coll), envelope([indicator()])), 403)


def test_object_endpoints_hide_what_the_agreement_withholds(live_server, partners, shared):
    coll, objs = shared
    _, cred = partners.add(lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"}))
    client = httpx.Client(auth=cred, headers={"Accept": TAXII})
    url = live_server.collection_url(coll)
    amber = objs["amber"]["id"]
    is_error_resource(client.get(f"{url}objects/{amber}/"), 404)
    is_error_resource(client.get(f"{url}objects/{amber}/versions/"), 404)
    manifest_ids = {m["id"] for m in client.get(f"{url}manifest/").json()["objects"]}
    assert amber not in manifest_ids and objs["green"]["id"] in manifest_ids
    assert client.get(f"{url}objects/{objs['green']['id']}/").status_code == 200


def test_expired_future_draft_and_suspended_grant_nothing(live_server, partners, shared):
    coll, _ = shared
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    for doc_for in (
        lambda s: agreement_doc(s, read=read, days_before=400, days_after=-1),
        lambda s: agreement_doc(s, read=read, days_before=-2, days_after=30),
        lambda s: agreement_doc(s, read=read, status="draft"),
        lambda s: agreement_doc(s, read=read, status="suspended"),
    ):
        _, cred = partners.add(doc_for)
        client = httpx.Client(auth=cred, headers={"Accept": TAXII})
        assert "collections" not in client.get(f"{live_server.api_root}collections/").json()
        is_error_resource(client.get(live_server.collection_url(coll) + "objects/"), 404)


def test_suspended_partner_and_revoked_or_expired_credentials_get_401(live_server, partners, shared):
    from datetime import datetime, timedelta

    from exchange.auth import service as auth_service
    from exchange.partner import service as partner_service

    coll, _ = shared
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "amber"})
    )
    url = live_server.collection_url(coll) + "objects/"
    assert httpx.get(url, auth=cred, headers={"Accept": TAXII}).status_code == 200
    with live_server.session() as db:
        partner = partner_service.get_by_slug(db, slug)
        second, key = partner_service.create_credential(
            db, partner=partner, actor="test", expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    is_error_resource(httpx.get(url, auth=(second.id, key), headers={"Accept": TAXII}), 401)
    with live_server.session() as db:
        partner_service.set_status(db, slug, "suspended", actor="test")
    is_error_resource(httpx.get(url, auth=cred, headers={"Accept": TAXII}), 401)
    with live_server.session() as db:
        partner_service.set_status(db, slug, "active", actor="test")
        auth_service.revoke(db, cred[0], actor="test")
    is_error_resource(httpx.get(url, auth=cred, headers={"Accept": TAXII}), 401)


def test_cursor_from_another_partner_is_refused(live_server, partners, shared):
    coll, _ = shared
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    _, one = partners.add(lambda s: agreement_doc(s, read=read))
    _, two = partners.add(lambda s: agreement_doc(s, read=read))
    url = live_server.collection_url(coll) + "objects/"
    token = httpx.get(url, params={"limit": 1}, auth=one, headers={"Accept": TAXII}).json()["next"]
    is_error_resource(httpx.get(url, params={"next": token}, auth=two, headers={"Accept": TAXII}), 400)


def test_types_embargo_redaction_and_anonymisation(live_server, partners, http):
    coll = live_server.collection(default_tlp="green")
    other_source = "identity--0d9c9a3e-2b51-4f6f-a0c9-6b8d1c7b9e11"
    ind = marked(20, "green", created_by_ref=other_source, x_bd_internal_notes="sensitive", confidence=80)
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "m",
        "is_family": False,
        "object_marking_refs": [TLP["green"]],
    }
    post(http, live_server.collection_url(coll), envelope([ind, malware]))
    read = {
        "collections": [coll.alias],
        "max_tlp": "green",
        "types": ["indicator"],
        "redact": ["x_bd_internal_notes"],
        "anonymize_source": True,
    }
    _, cred = partners.add(lambda s: agreement_doc(s, read=read))
    got = pull(live_server, cred, coll)
    assert [o["id"] for o in got] == [ind["id"]]
    assert "x_bd_internal_notes" not in got[0]
    assert got[0]["created_by_ref"] == live_server.settings.identity_id
    _, embargoed = partners.add(lambda s: agreement_doc(s, read={**read, "embargo": "24h"}))
    assert pull(live_server, embargoed, coll) == []


def test_audience_restricts_to_named_partners(live_server, partners, http):
    from exchange.intel import ingest as ingest_service
    from exchange.intel.models import Collection

    coll = live_server.collection(default_tlp="green")
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    named, named_cred = partners.add(lambda s: agreement_doc(s, read=read))
    _, other_cred = partners.add(lambda s: agreement_doc(s, read=read))
    obj = marked(30, "green")
    with live_server.session() as db:
        ingest_service.ingest(
            db, collection=db.get(Collection, coll.pk), objects=[obj], origin="analyst", audience=[named]
        )
    assert [o["id"] for o in pull(live_server, named_cred, coll)] == [obj["id"]]
    assert pull(live_server, other_cred, coll) == []


def test_referential_closure(live_server, partners, http):
    coll = live_server.collection(default_tlp="green")
    visible, hidden = marked(40, "green"), marked(41, "amber")
    rel = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": f"relationship--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "relationship_type": "related-to",
        "source_ref": visible["id"],
        "target_ref": hidden["id"],
        "object_marking_refs": [TLP["green"]],
    }
    rel_ok = dict(rel, id=f"relationship--{uuid.uuid4()}", target_ref=visible["id"])
    statement = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "definition_type": "statement",
        "definition": {"statement": "internal"},
    }
    with_statement = marked(42, "green")
    with_statement["object_marking_refs"].append(statement["id"])
    post(
        http,
        live_server.collection_url(coll),
        envelope([visible, hidden, rel, rel_ok, statement, with_statement]),
    )
    read = {"collections": [coll.alias], "max_tlp": "green", "types": ["indicator", "relationship"]}
    _, cred = partners.add(lambda s: agreement_doc(s, read=read))
    seen = {o["id"] for o in pull(live_server, cred, coll)}
    assert seen == {visible["id"], rel_ok["id"]}


def test_partner_writes_are_limited_to_granted_types_and_recorded(live_server, partners, http):
    coll = live_server.collection()
    write = {"collections": [coll.alias], "types": ["indicator"]}
    _slug, cred = partners.add(lambda s: agreement_doc(s, write=write))
    client = httpx.Client(auth=cred, headers={"Accept": TAXII})
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": "m",
        "is_family": False,
    }
    status = post(client, live_server.collection_url(coll), envelope([indicator(50), malware])).json()
    assert status["success_count"] == 1 and status["failure_count"] == 1
    assert "malware" in status["failures"][0]["message"]
    # Write-only: the partner cannot read the collection back (403 on GET).
    is_error_resource(client.get(live_server.collection_url(coll) + "objects/"), 403)
    from sqlalchemy import select

    from exchange.intel.models import ObjectVersion

    with live_server.session() as db:
        origins = set(db.scalars(select(ObjectVersion.origin).where(ObjectVersion.collection_pk == coll.pk)))
    assert origins == {"partner"}


def test_disclosure_ledger_records_what_partners_received(live_server, partners, shared, admin):
    coll, objs = shared
    slug, cred = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    pull(live_server, cred, coll)
    response = httpx.get(
        f"{live_server.url}/api/v1/objects/{objs['green']['id']}/recipients",
        headers={"Authorization": f"Bearer {admin[1]}"},
    )
    assert response.status_code == 200, response.text
    received = response.json()["received"]
    assert [(r["partner"], r["credential_id"], r["channel"]) for r in received] == [(slug, cred[0], "taxii")]
    amber = httpx.get(
        f"{live_server.url}/api/v1/objects/{objs['amber']['id']}/recipients",
        headers={"Authorization": f"Bearer {admin[1]}"},
    ).json()
    assert all(r["partner"] != slug for r in amber["received"])
