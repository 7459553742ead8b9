"""Exports follow the same in-force rule as TAXII reads: a suspended partner or agreement gets nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.support.partners import agreement_doc

pytestmark = pytest.mark.live


def test_no_export_for_a_suspended_partner_or_agreement(live_server, admin, partners) -> None:
    coll = live_server.collection()
    read = {"collections": [coll.alias], "max_tlp": "amber"}
    slug, _ = partners.add(lambda s: agreement_doc(s, read=read))
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=30)

    def export() -> httpx.Response:
        return api.get(f"/api/v1/exports/{coll.alias}", params={"partner": slug})

    assert export().status_code == 200
    assert api.patch(f"/api/v1/partners/{slug}", json={"status": "suspended"}).status_code == 200
    refused = export()
    assert refused.status_code == 404 and "may not read" in refused.json()["detail"]
    assert api.patch(f"/api/v1/partners/{slug}", json={"status": "active"}).status_code == 200
    assert export().status_code == 200
    assert api.post(f"/api/v1/agreements/{slug}/status", json={"status": "suspended"}).status_code == 200
    assert export().status_code == 404
