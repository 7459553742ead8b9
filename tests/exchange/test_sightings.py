"""Partner sightings posted over TAXII show up on the objects they point to."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.partners import agreement_doc
from tests.support.stix import envelope, indicator
from tests.support.taxii import TAXII, post

pytestmark = pytest.mark.live


def test_partner_sighting_appears_on_the_indicator(live_server, http, admin, partners):
    published = live_server.collection()
    submissions = live_server.collection()
    ind = indicator(1)
    post(http, live_server.collection_url(published), envelope([ind]))
    _slug, cred = partners.add(
        lambda s: agreement_doc(
            s, write={"collections": [submissions.alias], "types": ["sighting", "identity"]}
        )
    )
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": "2026-11-21T00:00:00.000Z",
        "modified": "2026-11-21T00:00:00.000Z",
        "sighting_of_ref": ind["id"],
        "count": 3,
    }
    partner_http = httpx.Client(auth=cred, headers={"Accept": TAXII})
    assert (
        post(partner_http, live_server.collection_url(submissions), envelope([sighting])).json()[
            "success_count"
        ]
        == 1
    )
    bearer = {"Authorization": f"Bearer {admin[1]}"}
    listed = httpx.get(f"{live_server.url}/api/v1/objects/{ind['id']}/sightings", headers=bearer).json()
    assert [(s["object"]["id"], s["origin"], s["collection"]) for s in listed] == [
        (sighting["id"], "partner", submissions.alias)
    ]
    assert listed[0]["added_by"] == cred[0]
    detail = httpx.get(f"{live_server.url}/api/v1/objects/{ind['id']}", headers=bearer).json()
    assert detail["versions"][0]["object"] == ind and detail["sightings"][0]["object"]["count"] == 3
    missing = httpx.get(f"{live_server.url}/api/v1/objects/indicator--{uuid.uuid4()}", headers=bearer)
    assert missing.status_code == 404
