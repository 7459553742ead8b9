"""Only an object's creator versions it, and a revoked object stays revoked: in ingest (every
writer), over TAXII POST, over REST and for feeds."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from exchange.intel import service as intel_service
from exchange.intel.ingest import ingest
from exchange.intel.models import ObjectVersion
from exchange.partner import service as partner_service
from tests.support.partners import agreement_doc
from tests.support.stix import envelope, indicator, ts
from tests.support.taxii import TAXII, post

CERT = "identity--5c2f3e1a-7b4d-4e9f-8a1b-3c6d9e2f1a07"


def _collection(db, settings):  # type: ignore[no-untyped-def]
    root = intel_service.get_api_root(db, settings.api_root)
    return intel_service.create_collection(db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t")


def _partner(db) -> tuple[Any, Any]:  # type: ignore[no-untyped-def]
    identity = f"identity--{uuid.uuid4()}"
    partner, credential, _ = partner_service.create(
        db, slug=f"p-{uuid.uuid4().hex[:8]}", name="P", country="IN", identity_id=identity, actor="test"
    )
    return partner, credential


def _latest(db, stix_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [
        json.loads(body)
        for body in db.scalars(
            select(ObjectVersion.body).where(
                ObjectVersion.stix_id == stix_id, ObjectVersion.is_latest.is_(True)
            )
        )
    ]


def test_a_partner_versions_only_what_it_created_or_first_submitted(db, settings):
    indicators, submissions = _collection(db, settings), _collection(db, settings)
    p, p_cred = _partner(db)
    q, _ = _partner(db)
    p_writer, q_writer = partner_service.writer(db, p), partner_service.writer(db, q)
    cert_obj = indicator(1, created_by_ref=CERT)
    assert (
        ingest(db, collection=indicators, objects=[cert_obj], origin="analyst", added_by="cred-a").created
        == 1
    )

    # Another's object, in another collection, even as a revocation: refused, nothing stored.
    hostile = [
        dict(cert_obj, modified=ts(5), revoked=True),
        dict(cert_obj, modified=ts(6), name="rewritten", created_by_ref=p.identity_id),
    ]
    for coll in (submissions, indicators):
        result = ingest(
            db, collection=coll, objects=hostile, origin="partner", added_by=p_cred.id, writer=p_writer
        )
        assert result.created == 0 and len(result.failures) == 2
        assert all(
            "only an object's creator may publish new versions" in f["message"] for f in result.failures
        )
    assert _latest(db, cert_obj["id"]) == [cert_obj]

    # An exact copy of what is stored changes nothing and is no failure (clients re-post context).
    copy = ingest(
        db, collection=submissions, objects=[cert_obj], origin="partner", added_by=p_cred.id, writer=p_writer
    )
    assert copy.failures == [] and copy.created == 1

    # Its own: never seen before, then a new version from another of its credentials.
    own = indicator(2)
    assert (
        ingest(
            db, collection=submissions, objects=[own], origin="partner", added_by=p_cred.id, writer=p_writer
        ).created
        == 1
    )
    second, _ = partner_service.create_credential(db, partner=p, actor="test")
    again = ingest(
        db,
        collection=submissions,
        objects=[dict(own, modified=ts(3))],
        origin="partner",
        added_by=second.id,
        writer=partner_service.writer(db, p),
    )
    assert again.created == 1 and again.failures == []
    # ... but not another partner's.
    stolen = ingest(
        db,
        collection=submissions,
        objects=[dict(own, modified=ts(4), revoked=True)],
        origin="partner",
        added_by="cred-q",
        writer=q_writer,
    )
    assert stolen.created == 0 and "did not create this object" in stolen.failures[0]["message"]
    assert p.slug not in stolen.failures[0]["message"]

    # Created by the partner (created_by_ref), relayed by the CERT: the partner may version it.
    theirs = indicator(3, created_by_ref=p.identity_id)
    ingest(db, collection=indicators, objects=[theirs], origin="analyst", added_by="cred-a")
    versioned = ingest(
        db,
        collection=submissions,
        objects=[dict(theirs, modified=ts(7))],
        origin="partner",
        added_by=p_cred.id,
        writer=p_writer,
    )
    assert versioned.created == 1, versioned.failures


def test_a_feed_versions_only_what_feeds_brought(db, settings):
    coll = _collection(db, settings)
    cert_obj = indicator(1, created_by_ref=CERT)
    from_feed = indicator(2)
    ingest(db, collection=coll, objects=[cert_obj], origin="analyst", added_by="cred-a")
    ingest(db, collection=coll, objects=[from_feed], origin="feed", added_by="feed:one")
    result = ingest(
        db,
        collection=coll,
        objects=[dict(cert_obj, modified=ts(5), revoked=True), dict(from_feed, modified=ts(5))],
        origin="feed",
        added_by="feed:two",
    )
    assert result.created == 1
    assert [f["id"] for f in result.failures] == [cert_obj["id"]]
    assert "a feed may not publish new versions" in result.failures[0]["message"]


def test_a_revoked_object_gets_no_new_version_from_anyone(db, settings):
    coll, other = _collection(db, settings), _collection(db, settings)
    obj = indicator(1)
    revoked = dict(obj, modified=ts(2), revoked=True)
    first = ingest(db, collection=coll, objects=[obj, revoked, dict(obj, modified=ts(3))], origin="analyst")
    assert first.created == 2 and len(first.failures) == 1  # in the same envelope too
    assert "was revoked" in first.failures[0]["message"]
    for where in (coll, other):
        result = ingest(
            db,
            collection=where,
            objects=[dict(obj, modified=ts(4)), dict(obj, modified=ts(5), revoked=False)],
            origin="analyst",
        )
        assert result.created == 0 and len(result.failures) == 2, result.failures
        assert all("a revoked object cannot get new versions" in f["message"] for f in result.failures)
        assert result.conflicts
    # A feed's own revoked object: a counted failure, for feeds as for everyone.
    fed = indicator(9)
    ingest(db, collection=other, objects=[dict(fed, revoked=True)], origin="feed", added_by="feed:x")
    again = ingest(
        db, collection=other, objects=[dict(fed, modified=ts(8))], origin="feed", added_by="feed:x"
    )
    assert again.created == 0 and "a revoked object cannot get new versions" in again.failures[0]["message"]
    # An older version (history filled in later) un-revokes nothing and is kept.
    older = ingest(db, collection=coll, objects=[dict(obj, modified=ts(1))], origin="analyst")
    assert older.created == 1 and older.failures == []
    assert _latest(db, obj["id"]) == [revoked]


@pytest.mark.live
def test_over_taxii_a_partner_cannot_version_the_certs_object_nor_its_own_revoked_one(live_server, partners):
    coll = live_server.collection()
    _, cred = partners.add(
        lambda s: agreement_doc(
            s, read={"collections": [coll.alias], "max_tlp": "amber"}, write={"collections": [coll.alias]}
        )
    )
    admin = live_server.credential("admin")
    cert_obj = indicator(1, created_by_ref=CERT)
    url = live_server.collection_url(coll)
    with httpx.Client(auth=admin, headers={"Accept": TAXII}, timeout=30) as staff:
        assert post(staff, url, envelope([cert_obj])).json()["success_count"] == 1
    own = indicator(2)
    with httpx.Client(auth=cred, headers={"Accept": TAXII}, timeout=30) as partner:
        status = post(
            partner,
            url,
            envelope(
                [dict(cert_obj, modified=ts(9), revoked=True), own, dict(own, modified=ts(1), revoked=True)]
            ),
        ).json()
        assert (status["success_count"], status["failure_count"]) == (2, 1), status
        assert status["failures"][0]["id"] == cert_obj["id"]
        assert "only an object's creator may publish new versions" in status["failures"][0]["message"]
        status = post(partner, url, envelope([dict(own, modified=ts(2))])).json()
        assert status["failure_count"] == 1 and "was revoked" in status["failures"][0]["message"]
        latest = partner.get(f"{url}objects/{cert_obj['id']}/").json()["objects"]
    assert [o.get("revoked", False) for o in latest] == [False]


@pytest.mark.live
def test_over_rest_revocation_is_final(live_server, admin):
    api = httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {admin[1]}"}, timeout=30
    )
    coll = live_server.collection()
    obj = indicator(1)
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [obj]}
    stored = api.post("/bundles", params={"collection": coll.alias}, json=bundle)
    assert stored.status_code == 200 and stored.json()["success_count"] == 1, stored.text
    assert api.post(f"/objects/{obj['id']}/revoke").status_code == 200
    for attempt in (
        lambda: api.post(f"/objects/{obj['id']}/versions", json={"name": "changed"}),
        lambda: api.post(f"/objects/{obj['id']}/versions", json={"revoked": None}),
        lambda: api.post(f"/objects/{obj['id']}/revoke"),
    ):
        refused = attempt()
        assert refused.status_code == 409, refused.text
        assert "was revoked" in refused.json()["detail"]
    with live_server.session() as db:
        versions = db.scalars(
            select(ObjectVersion.revoked)
            .where(ObjectVersion.stix_id == obj["id"])
            .order_by(ObjectVersion.version)
        ).all()
    assert versions == [False, True]


def test_a_hostile_feed_neither_versions_the_certs_objects_nor_unrevokes_its_own(
    feed_server,
    feeds,
    factory,
    feed_settings,
):
    from exchange.database.core import session_scope
    from feeds.runner import run_feed

    cert_obj = indicator(1, created_by_ref=CERT)
    fed = indicator(2)
    with session_scope(factory, write=True) as db:
        root = intel_service.get_api_root(db, feed_settings.api_root)
        mine = intel_service.create_collection(
            db, api_root=root, alias=f"c-{uuid.uuid4().hex[:12]}", title="t"
        )
        ingest(db, collection=mine, objects=[cert_obj], origin="analyst", added_by="cred-a")

    def bundle(*objects: dict[str, Any]) -> bytes:
        return json.dumps(
            {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": list(objects)}
        ).encode()

    url = feed_server.serve(
        "/hostile.json", bundle(dict(fed, modified=ts(1), revoked=True)), content_type="application/json"
    )
    name, _ = feeds.add("stix-bundle", url)
    assert run_feed(factory, feed_settings, name).counts["new"] == 1
    feed_server.routes["/hostile.json"].body = bundle(
        dict(fed, modified=ts(2)), dict(cert_obj, modified=ts(9), revoked=True)
    )
    summary = run_feed(factory, feed_settings, name)
    assert (summary.counts["new"], summary.counts["updated"], summary.counts["failed"]) == (0, 0, 2), (
        summary.line()
    )
    messages = {f["id"]: f["message"] for f in feeds.runs(name)[0].failures}
    assert "a revoked object cannot get new versions" in messages[fed["id"]]
    assert "a feed may not publish new versions" in messages[cert_obj["id"]]
    with session_scope(factory) as db:
        assert _latest(db, cert_obj["id"]) == [cert_obj]
        assert [o.get("revoked") for o in _latest(db, fed["id"])] == [True]
