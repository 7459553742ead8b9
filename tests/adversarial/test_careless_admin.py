"""A careless administrator: agreements naming what does not exist, and changes made while a
partner is in the middle of paging (suspension, revocation, a narrower agreement, a deletion).
A live `next` cursor never outlives the access it was issued under."""

from __future__ import annotations

import httpx
import pytest

from exchange.agreement import service as agreement_service
from exchange.auth import service as auth_service
from exchange.partner import service as partner_service
from tests.support.partners import agreement_doc
from tests.support.stix import CLEAR, indicator_on
from tests.support.taxii import TAXII, submit

pytestmark = pytest.mark.live


def page(url: str, cred, **params):  # type: ignore[no-untyped-def]
    return httpx.get(url + "objects/", params=params, auth=cred, headers={"Accept": TAXII}, timeout=30)


@pytest.fixture
def paging(live_server, http, partners):  # type: ignore[no-untyped-def]
    """A partner half way through paging a collection of two clear and four green objects."""
    coll = live_server.collection(default_tlp="green")
    url = live_server.collection_url(coll)
    objs = [indicator_on(f"192.0.2.{n}", CLEAR if n in (1, 5) else None) for n in range(1, 7)]
    submit(http, url, objs)

    def doc(s: str) -> dict:  # type: ignore[type-arg]
        return agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})

    slug, cred = partners.add(doc)
    first = page(url, cred, limit=2)
    assert first.status_code == 200 and first.json()["more"]
    return coll, url, objs, slug, cred, doc, first.json()


def test_suspending_the_partner_mid_pull_ends_its_cursor(live_server, paging):
    _, url, _, slug, cred, _, first = paging
    with live_server.session() as db:
        partner_service.set_status(db, slug, "suspended", actor="careless-admin")
    assert page(url, cred, next=first["next"]).status_code == 401


def test_suspending_the_agreement_mid_pull_ends_its_cursor(live_server, paging):
    _, url, _, slug, cred, _, first = paging
    with live_server.session() as db:
        agreement_service.set_status(db, slug, "suspended", actor="careless-admin")
    assert page(url, cred, next=first["next"]).status_code == 404


def test_revoking_the_credential_mid_pull_ends_its_cursor(live_server, paging):
    _, url, _, _, cred, _, first = paging
    with live_server.session() as db:
        auth_service.revoke(db, cred[0], actor="careless-admin")
    assert page(url, cred, next=first["next"]).status_code == 401


def test_a_narrower_agreement_applies_to_the_next_page_of_a_live_cursor(live_server, partners, paging):
    coll, url, objs, slug, cred, doc, first = paging
    partners.apply(doc(slug) | {"read": {"collections": [coll.alias], "max_tlp": "clear"}})
    rest = page(url, cred, next=first["next"])
    assert rest.status_code == 200
    got = {o["id"] for o in rest.json().get("objects", [])}
    assert got <= {objs[0]["id"], objs[4]["id"]}


def test_an_object_deleted_mid_pull_is_neither_served_nor_costs_another(live_server, http, paging):
    _, url, objs, _, cred, _, first = paging
    deleted = objs[3]["id"]
    assert http.delete(url + f"objects/{deleted}/").status_code == 200
    seen = [o["id"] for o in first["objects"]]
    body = first
    for _ in range(10):
        if not body.get("more"):
            break
        body = page(url, cred, next=body["next"], limit=2).json()
        seen += [o["id"] for o in body.get("objects", [])]
    assert sorted(seen) == sorted(o["id"] for o in objs if o["id"] != deleted)


def test_an_agreement_naming_a_collection_that_does_not_exist_is_refused(live_server, admin):
    doc = agreement_doc("cert-nowhere", read={"collections": ["no-such-collection"], "max_tlp": "green"})
    with live_server.session() as db:
        partner_service.create(db, slug="cert-nowhere", name="N", country="IN", actor="test")
    response = httpx.put(
        f"{live_server.url}/api/v1/agreements", json=doc, headers={"Authorization": f"Bearer {admin[1]}"}
    )
    assert response.status_code == 422
    assert "no-such-collection" in response.text
