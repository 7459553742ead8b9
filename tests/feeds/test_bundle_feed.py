"""STIX bundle feeds: ETag, new versions, half-valid bundles, feed defaults, warninglists."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from exchange.database.core import session_scope
from exchange.intel.models import ObjectVersion
from feeds.runner import run_feed
from tests.support.stix import AMBER, CLEAR, sdo

T0, T1 = "2026-04-01T00:00:00.000Z", "2026-04-02T00:00:00.000Z"


def indicator(value: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    """An unmarked indicator on the address `value`."""
    return sdo(
        "indicator",
        None,
        created=T0,
        modified=T0,
        pattern=f"[ipv4-addr:value = '{value}']",
        pattern_type="stix",
        valid_from=T0,
        **extra,
    )


def bundle(*objects: dict) -> bytes:
    return json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": list(objects)}).encode()


def stored(factory, coll) -> list[dict]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        return [
            json.loads(b)
            for b in db.scalars(
                select(ObjectVersion.body)
                .where(ObjectVersion.collection_pk == coll.pk)
                .order_by(ObjectVersion.date_added_us)
            )
        ]


def test_unchanged_bundle_costs_one_conditional_request_and_changes_are_new_versions(
    feed_server, feeds, factory, feed_settings
) -> None:
    a, b = indicator("198.51.100.1"), indicator("198.51.100.2", object_marking_refs=[AMBER], confidence=20)
    url = feed_server.serve("/b.json", bundle(a, b), content_type="application/stix+json")
    name, coll = feeds.add("stix-bundle", url, tlp="clear", confidence=75)
    first = run_feed(factory, feed_settings, name)
    assert (first.status, first.counts["fetched"], first.counts["new"]) == ("ok", 2, 2), first.line()
    by_id = {o["id"]: o for o in stored(factory, coll)}
    assert by_id[a["id"]]["object_marking_refs"] == [CLEAR] and by_id[a["id"]]["confidence"] == 75
    assert by_id[b["id"]]["object_marking_refs"] == [AMBER] and by_id[b["id"]]["confidence"] == 20

    second = run_feed(factory, feed_settings, name)
    assert (second.counts["fetched"], second.counts["new"]) == (0, 0)
    assert feed_server.routes["/b.json"].conditional_hits == 1

    feed_server.serve("/b.json", bundle(a, {**b, "modified": T1, "confidence": 40}))
    third = run_feed(factory, feed_settings, name)
    assert (third.counts["updated"], third.counts["unchanged"], third.counts["new"]) == (1, 1, 0), (
        third.line()
    )
    assert len(stored(factory, coll)) == 3


def test_a_half_valid_bundle_keeps_the_good_objects_and_names_the_bad(
    feed_server, feeds, factory, feed_settings
) -> None:
    good = [indicator(f"198.51.100.{i}") for i in range(10, 14)]
    bad_id = {**indicator("198.51.100.20"), "id": "indicator--not-a-uuid"}
    backwards = {**indicator("198.51.100.21"), "modified": "2025-01-01T00:00:00.000Z"}
    broken = {**indicator("198.51.100.22"), "pattern": "[ipv4-addr:value = '1.2.3.4'"}
    raw = bundle(good[0], bad_id, good[1], backwards, broken, good[2]).decode()
    duplicate_key = '{"type": "indicator", "type": "indicator", "id": "indicator--' + str(uuid.uuid4()) + '"}'
    raw = raw[:-2] + ", " + duplicate_key + ", " + json.dumps(good[3]) + "]}"
    url = feed_server.serve("/half.json", raw.encode())
    name, coll = feeds.add("stix-bundle", url, tlp="green")
    result = run_feed(factory, feed_settings, name)
    assert result.status == "partial", result.line()
    assert (result.counts["fetched"], result.counts["new"], result.counts["failed"]) == (8, 4, 4)
    assert {o["id"] for o in stored(factory, coll)} == {g["id"] for g in good}
    failures = feeds.runs(name)[0].failures
    assert {"indicator--not-a-uuid", backwards["id"], broken["id"]} <= {f["id"] for f in failures}
    assert any("duplicate key" in f["message"] for f in failures)


def test_warninglists_drop_known_benign_values(feed_server, feeds, factory, feed_settings) -> None:
    benign, bad = indicator("8.8.8.8"), indicator("198.51.100.99")
    url = feed_server.serve("/wl.json", bundle(benign, bad))
    name, coll = feeds.add("stix-bundle", url, warninglists=True)
    result = run_feed(factory, feed_settings, name)
    assert (result.counts["dropped"], result.counts["new"]) == (1, 1)
    assert [o["id"] for o in stored(factory, coll)] == [bad["id"]]


def test_a_feed_cannot_lower_the_tlp_of_another_feeds_object(
    feed_server, feeds, factory, feed_settings
) -> None:
    """Feeds may version each other's objects, but one marking another's AMBER indicator CLEAR
    would hand it to every partner whose ceiling is below AMBER."""
    amber = indicator("198.51.100.120", object_marking_refs=[AMBER])
    first_url = feed_server.serve("/first.json", bundle(amber))
    first, coll = feeds.add("stix-bundle", first_url)
    assert run_feed(factory, feed_settings, first).counts["new"] == 1
    lowered = {**amber, "modified": T1, "object_marking_refs": [CLEAR]}
    raised = {**amber, "modified": T1, "object_marking_refs": [AMBER], "confidence": 90}
    other_url = feed_server.serve("/other.json", bundle(lowered))
    other, other_coll = feeds.add("stix-bundle", other_url)
    refused = run_feed(factory, feed_settings, other)
    assert (refused.status, refused.counts["new"], refused.counts["failed"]) == ("partial", 0, 1), (
        refused.line()
    )
    assert "lower its TLP" in feeds.runs(other)[0].failures[0]["message"]
    assert stored(factory, other_coll) == [] and [
        o["object_marking_refs"] for o in stored(factory, coll)
    ] == [[AMBER]]
    # The same level (or a stricter one) is still a version the other feed may publish.
    feed_server.serve("/other.json", bundle(raised))
    assert run_feed(factory, feed_settings, other).counts["new"] == 1
    # The source that set the level may lower it.
    later = {**amber, "modified": "2026-04-03T00:00:00.000Z", "object_marking_refs": [CLEAR]}
    feed_server.serve("/first.json", bundle(later))
    assert run_feed(factory, feed_settings, first).counts["updated"] == 1
