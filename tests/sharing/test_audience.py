"""An analyst's audience narrowing holds for every later version and every copy of the object:
a new version over TAXII or REST, and a partner's re-post of it, reach no partner outside it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.partners import agreement_doc
from tests.support.stix import incident_body
from tests.support.taxii import ids, submit

pytestmark = pytest.mark.live


@pytest.fixture
def api(live_server, admin) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def setting(live_server, partners) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A shared collection and an inbox; lk reads both; np (the audience) reads both, writes the
    inbox and relays to lk."""
    coll = live_server.collection(default_tlp="green")
    inbox = live_server.collection(default_tlp="green")
    read = {"collections": [coll.alias, inbox.alias], "max_tlp": "amber"}
    lk, lk_cred = partners.add(lambda s: agreement_doc(s, read=read))
    np, np_cred = partners.add(
        lambda s: agreement_doc(s, read=read, write={"collections": [inbox.alias], "relay_to": [lk]})
    )
    return {"coll": coll, "inbox": inbox, "lk": lk_cred, "np": np_cred, "np_slug": np}


def _published_indicator(live_server, api, http, setting) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = incident_body(setting["coll"].alias, audience=[setting["np_slug"]])
    # A value of its own: other tests publish incident_body's values elsewhere, to other audiences.
    n = uuid.uuid4().int
    body["observables"] = [
        {"type": "ipv4-addr", "value": f"45.{n % 250}.{n // 250 % 250}.{n // 62500 % 250}"}
    ]
    published = api.post("/api/v1/incidents", json=body)
    assert published.status_code == 201, published.text
    indicator_id = next(o["id"] for o in published.json()["objects"] if o["type"] == "indicator")
    url = live_server.collection_url(setting["coll"])
    assert indicator_id in ids(url, setting["np"]) and indicator_id not in ids(url, setting["lk"])
    served = http.get(url + f"objects/{indicator_id}/")
    assert served.status_code == 200, served.text
    return served.json()["objects"][0]  # type: ignore[no-any-return]


def test_a_new_version_keeps_the_audience_over_taxii_and_then_rest(live_server, api, http, setting):
    obj = _published_indicator(live_server, api, http, setting)
    url = live_server.collection_url(setting["coll"])
    newer = obj | {"modified": "2099-01-01T00:00:00.000Z", "name": "renamed over TAXII"}
    assert submit(http, url, [newer])["success_count"] == 1
    assert obj["id"] in ids(url, setting["np"])
    assert obj["id"] not in ids(url, setting["lk"])
    again = api.post(f"/api/v1/objects/{obj['id']}/versions", json={"name": "renamed over REST"})
    assert again.status_code == 200, again.text
    assert obj["id"] in ids(url, setting["np"])
    assert obj["id"] not in ids(url, setting["lk"])


def test_a_partners_copy_stays_within_the_audience(live_server, api, http, setting):
    obj = _published_indicator(live_server, api, http, setting)
    inbox = live_server.collection_url(setting["inbox"])
    status = submit(None, inbox, [obj], auth=setting["np"])
    assert status["success_count"] == 1
    assert obj["id"] not in ids(inbox, setting["lk"])


def test_an_object_shared_with_nobody_stays_so_in_a_rest_version(live_server, api, http, setting):
    """A copy whose audiences elsewhere do not overlap is stored for no partner (","); a REST new
    version of it read that as no audience at all, which means every partner."""
    from sqlalchemy import update

    from exchange.intel.models import ObjectVersion

    obj = _published_indicator(live_server, api, http, setting)
    url = live_server.collection_url(setting["coll"])
    with live_server.session() as db:  # as _kept_audiences stores disjoint audiences
        db.execute(update(ObjectVersion).where(ObjectVersion.stix_id == obj["id"]).values(audience=","))
    assert obj["id"] not in ids(url, setting["np"])
    again = api.post(f"/api/v1/objects/{obj['id']}/versions", json={"name": "renamed over REST"})
    assert again.status_code == 200, again.text
    assert obj["id"] not in ids(url, setting["np"]) and obj["id"] not in ids(url, setting["lk"])
