"""MISP feeds (manifest plus events) converted with misp-stix: only new or changed events are
fetched, a broken event is named and retried, the event's TLP covers its contents."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from exchange.database.core import session_scope
from exchange.intel.models import ObjectVersion
from feeds.runner import run_feed

GREEN_1_0 = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"


def attribute(kind: str, value: str, to_ids: bool = True) -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "type": kind,
        "category": "Network activity",
        "value": value,
        "to_ids": to_ids,
        "timestamp": "1767225600",
    }


def event(info: str, attributes: list[dict], timestamp: str = "1767225600", tlp: str = "tlp:green") -> dict:
    return {
        "Event": {
            "uuid": str(uuid.uuid4()),
            "info": info,
            "date": "2026-03-01",
            "timestamp": timestamp,
            "publish_timestamp": timestamp,
            "published": True,
            "analysis": "2",
            "threat_level_id": "2",
            "Orgc": {"name": "CIRCL", "uuid": "55f6ea5e-2c60-40e5-964f-47a8950d210f"},
            "Tag": [{"name": tlp}],
            "Attribute": attributes,
        }
    }


def publish(server, events: list[dict], extra: dict | None = None) -> str:  # type: ignore[no-untyped-def]
    manifest = {
        e["Event"]["uuid"]: {"timestamp": e["Event"]["timestamp"], "info": e["Event"]["info"]} for e in events
    }
    manifest |= extra or {}
    for e in events:
        server.serve(
            f"/misp/{e['Event']['uuid']}.json", json.dumps(e).encode(), content_type="application/json"
        )
    return server.serve("/misp/manifest.json", json.dumps(manifest).encode(), content_type="application/json")


def stored(factory, coll) -> list[dict]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        return [
            json.loads(b)
            for b in db.scalars(select(ObjectVersion.body).where(ObjectVersion.collection_pk == coll.pk))
        ]


def test_events_are_converted_and_only_changed_ones_fetched_again(
    feed_server, feeds, factory, feed_settings
) -> None:
    first = event(
        "Phishing wave",
        [
            attribute("ip-dst", "198.51.100.44"),
            attribute("domain", "evil.example.net"),
            attribute("sha256", "a" * 64, to_ids=True),
        ],
    )
    second = event("Scanner", [attribute("url", "http://bad.example.org/x")], tlp="tlp:white")
    url = publish(feed_server, [first, second])
    name, coll = feeds.add("misp", url.removesuffix("manifest.json"), tlp="amber")
    run1 = run_feed(factory, feed_settings, name)
    assert run1.status == "ok", run1.line()
    objects = stored(factory, coll)
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert {"[domain-name:value = 'evil.example.net']", f"[file:hashes.'SHA-256' = '{'a' * 64}']"} <= {
        i["pattern"] for i in indicators
    }
    assert any(o["type"] == "report" and o["name"] == "Phishing wave" for o in objects)
    # The event's TLP:GREEN covers its indicators rather than the feed's default amber.
    assert all(GREEN_1_0 in i["object_marking_refs"] for i in indicators if "evil" in i["pattern"])
    count = len(objects)

    run2 = run_feed(factory, feed_settings, name)
    assert (run2.counts["fetched"], run2.counts["new"]) == (0, 0)
    assert feed_server.routes[f"/misp/{first['Event']['uuid']}.json"].requests == 1

    first["Event"]["timestamp"] = "1767312000"
    first["Event"]["Attribute"].append(attribute("ip-dst", "198.51.100.45"))
    publish(feed_server, [first, second])  # fresh routes: request counts start again at 0
    run3 = run_feed(factory, feed_settings, name)
    assert run3.status == "ok", run3.line()
    assert feed_server.routes[f"/misp/{first['Event']['uuid']}.json"].requests == 1
    assert feed_server.routes[f"/misp/{second['Event']['uuid']}.json"].requests == 0
    assert run3.counts["new"] >= 2 and len(stored(factory, coll)) > count


def test_a_broken_event_is_named_the_others_stored_and_it_is_retried(
    feed_server, feeds, factory, feed_settings
) -> None:
    good = event("Good", [attribute("ip-dst", "198.51.100.50")])
    broken_id = str(uuid.uuid4())
    url = publish(feed_server, [good], extra={broken_id: {"timestamp": "1767225600", "info": "broken"}})
    feed_server.serve(f"/misp/{broken_id}.json", b"{not json")
    name, coll = feeds.add("misp", url)
    result = run_feed(factory, feed_settings, name)
    assert result.status == "partial" and result.counts["failed"] == 1, result.line()
    failure = feeds.runs(name)[0].failures[0]
    assert failure["id"] == f"event {broken_id}" and "not JSON" in failure["message"]
    assert any(o["type"] == "indicator" for o in stored(factory, coll))
    fixed = event("Fixed", [attribute("domain", "fixed.example")])
    fixed["Event"]["uuid"] = broken_id
    feed_server.serve(f"/misp/{broken_id}.json", json.dumps(fixed).encode())
    again = run_feed(factory, feed_settings, name)
    assert again.status == "ok", again.line()
    assert feed_server.routes[f"/misp/{broken_id}.json"].requests == 1
    assert feed_server.routes[f"/misp/{good['Event']['uuid']}.json"].requests == 1  # not fetched again


def test_warninglists_drop_benign_attributes(feed_server, feeds, factory, feed_settings) -> None:
    url = publish(
        feed_server,
        [event("Mixed", [attribute("domain", "google.com"), attribute("domain", "zzq-bad.example")])],
    )
    name, coll = feeds.add("misp", url, warninglists=True)
    result = run_feed(factory, feed_settings, name)
    assert result.counts["dropped"] >= 1
    patterns = {o.get("pattern") for o in stored(factory, coll) if o["type"] == "indicator"}
    assert "[domain-name:value = 'zzq-bad.example']" in patterns
    assert "[domain-name:value = 'google.com']" not in patterns
