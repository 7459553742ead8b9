"""Every place a person gives a TLP level accepts the same spellings and stores the canonical one:
collection add (CLI), feed add (CLI and REST), incidents and agreements (REST)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from exchange.feed import service as feed_service
from exchange.intel.models import Collection
from policies.tlp import TLP_2_0

EXE = str(Path(sys.executable).with_name("exchange"))
LEVELS_LISTED = "expected one of clear, green, amber, amber+strict, red"


def run(env, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def, type-arg]
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def api(live_server, admin):  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=60
    ) as client:
        yield client


def test_collection_add_takes_the_spellings_feed_add_takes(env) -> None:
    assert run(env, "init").returncode == 0
    stored = {}
    for given in ("AMBER", "TLP:Amber+Strict", "White"):
        alias = f"t-{uuid.uuid4().hex[:10]}"
        added = run(env, "collection", "add", alias, "--default-tlp", given, "--json")
        assert added.returncode == 0, added.stderr
        stored[given] = alias
    listed = {
        c["alias"]: c["default_tlp"] for c in json.loads(run(env, "collection", "list", "--json").stdout)
    }
    assert [listed[stored[g]] for g in ("AMBER", "TLP:Amber+Strict", "White")] == [
        "amber",
        "amber+strict",
        "clear",
    ]

    refused = run(env, "collection", "add", f"t-{uuid.uuid4().hex[:10]}", "--default-tlp", "purple")
    assert refused.returncode == 1
    assert "unknown TLP level 'purple'" in refused.stderr and LEVELS_LISTED in refused.stderr

    feed = f"t-{uuid.uuid4().hex[:10]}"
    added = run(
        env, "feed", "add", feed, "--kind", "text", "--url", "https://feeds.example.org/list.txt",
        "--collection", "indicators", "--tlp", "TLP:AMBER", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["tlp"] == "amber"
    refused = run(
        env, "feed", "add", f"t-{uuid.uuid4().hex[:10]}", "--kind", "text", "--url",
        "https://feeds.example.org/list.txt", "--collection", "indicators", "--tlp", "amber strict",
    )  # fmt: skip
    assert refused.returncode == 1 and LEVELS_LISTED in refused.stderr


@pytest.mark.parametrize(
    ("given", "stored"), [("TLP:AMBER+STRICT", "amber+strict"), ("White", "clear"), ("GREEN", "green")]
)
def test_feeds_over_rest_store_the_canonical_level(api, live_server, coll, given, stored) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    body = {"name": name, "kind": "text", "url": "https://feeds.example.org/a.txt", "collection": coll.alias}
    created = api.post("/api/v1/feeds", json=body | {"tlp": given})
    assert created.status_code == 201, created.text
    assert created.json()["tlp"] == stored
    changed = api.patch(f"/api/v1/feeds/{name}", json={"tlp": given.lower()})
    assert changed.status_code == 200 and changed.json()["tlp"] == stored
    with live_server.session() as db:
        assert feed_service.get_by_name(db, name).default_tlp == stored
    api.delete(f"/api/v1/feeds/{name}")


def test_a_bad_level_is_refused_the_same_way_everywhere(api, coll) -> None:
    feed = {"name": f"t-{uuid.uuid4().hex[:10]}", "kind": "text", "url": "https://f.example.org/a"}
    answers = [
        api.post("/api/v1/feeds", json=feed | {"collection": coll.alias, "tlp": "purple"}),
        api.post("/api/v1/incidents", json={"title": "x", "tlp": "purple", "collection": coll.alias}),
        api.post(
            "/api/v1/agreements/preview",
            json={
                "partner": "cert-in",
                "title": "MoU",
                "valid_from": "2026-01-01",
                "valid_until": "2026-12-31",
                "read": {"collections": [coll.alias], "max_tlp": "purple"},
            },
        ),
    ]
    for answer in answers:
        assert answer.status_code in (400, 422), answer.text
        assert "unknown TLP level 'purple'" in answer.text and LEVELS_LISTED in answer.text


def test_incidents_and_agreements_over_rest_take_any_spelling(api, live_server, coll) -> None:
    published = api.post(
        "/api/v1/incidents", json={"title": "t", "tlp": "TLP:WHITE", "collection": coll.alias}
    )
    assert published.status_code == 201, published.text
    incident = api.get(f"/api/v1/objects/{published.json()['incident']}").json()
    assert incident["versions"][0]["object"]["object_marking_refs"] == [TLP_2_0["clear"]["id"]]

    slug = f"p-{uuid.uuid4().hex[:8]}"
    assert api.post("/api/v1/partners", json={"slug": slug, "name": "P", "country": "IN"}).status_code == 201
    doc = {
        "partner": slug,
        "title": "MoU",
        "valid_from": "2026-01-01",
        "valid_until": "2029-12-31",
        "status": "active",
        "read": {"collections": [coll.alias], "max_tlp": "TLP:Amber+Strict"},
    }
    assert api.put("/api/v1/agreements", json=doc).status_code == 200
    assert api.get(f"/api/v1/agreements/{slug}").json()["read"]["max_tlp"] == "amber+strict"
    with live_server.session() as db:
        assert db.get(Collection, coll.pk).default_tlp == "amber"
