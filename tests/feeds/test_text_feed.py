"""Text IoC lists: detection, normalisation, deterministic ids, ETag, dedup across runs."""

from __future__ import annotations

import json

from sqlalchemy import select

from exchange.database.core import session_scope
from exchange.intel.models import ObjectVersion
from feeds.runner import run_feed

LIST = b"""# a comment
198.51.100.7
2001:DB8::1   # trailing comment
203.0.113.0/24
Evil.Example.COM.
http://Bad.Example.net/path?q=1
44d88612fea8a8f36de82e1f5c3e8fa2
3395856ce81f2b7382dee72602f798b642f14140
275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f

; another comment
not an indicator at all
198.51.100.7
"""


def _bodies(factory, coll) -> list[dict]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        return [
            json.loads(b)
            for b in db.scalars(
                select(ObjectVersion.body)
                .where(ObjectVersion.collection_pk == coll.pk)
                .order_by(ObjectVersion.date_added_us)
            )
        ]


def test_text_list_becomes_indicators_and_rerun_adds_nothing(
    feed_server, feeds, factory, feed_settings
) -> None:
    url = feed_server.serve("/list.txt", LIST)
    name, coll = feeds.add("text", url, tlp="green", confidence=60)
    first = run_feed(factory, feed_settings, name)
    assert first.status == "partial", first.line()
    assert first.counts["fetched"] == 10
    assert first.counts["new"] == 8
    assert first.counts["failed"] == 1
    bodies = _bodies(factory, coll)
    patterns = sorted(b["pattern"] for b in bodies)
    assert "[domain-name:value = 'evil.example.com']" in patterns
    assert "[ipv6-addr:value = '2001:db8::1']" in patterns
    assert "[ipv4-addr:value = '203.0.113.0/24']" in patterns
    assert "[url:value = 'http://bad.example.net/path?q=1']" in patterns
    assert (
        "[file:hashes.'SHA-256' = '275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f']"
        in patterns
    )
    assert all(b["confidence"] == 60 for b in bodies)
    assert all(
        b["object_marking_refs"] == ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]
        for b in bodies
    )
    assert feed_server.routes["/list.txt"].requests == 1

    second = run_feed(factory, feed_settings, name)
    assert second.status == "ok"
    assert second.counts["fetched"] == 0
    assert feed_server.routes["/list.txt"].conditional_hits == 1
    assert len(_bodies(factory, coll)) == 8
    assert [r.status for r in feeds.runs(name)] == ["ok", "partial"]


def test_changed_list_updates_only_what_changed(feed_server, feeds, factory, feed_settings) -> None:
    url = feed_server.serve("/l.txt", b"198.51.100.1\n198.51.100.2\n")
    name, coll = feeds.add("text", url, tlp="clear")
    assert run_feed(factory, feed_settings, name).counts["new"] == 2
    feed_server.serve("/l.txt", b"198.51.100.1\n198.51.100.2\n198.51.100.3\n")
    again = run_feed(factory, feed_settings, name)
    assert (again.counts["new"], again.counts["unchanged"], again.counts["updated"]) == (1, 2, 0)
    assert len(_bodies(factory, coll)) == 3


def test_catch_all_and_local_addresses_never_become_indicators(
    feed_server, feeds, factory, feed_settings
) -> None:
    """A partner that blocks what it is sent would block the whole Internet (0.0.0.0/0) or its
    own network (10.0.0.1): such lines are refused, each with its reason, beside good ones."""
    hostile = b"0.0.0.0/0\n::/0\n0.0.0.0/1\n128.0.0.0/1\n127.0.0.1\n192.168.1.1\n10.0.0.1\n169.254.169.254\n"
    url = feed_server.serve("/wide.txt", hostile + b"198.51.100.9\n")
    name, coll = feeds.add("text", url, tlp="clear")
    result = run_feed(factory, feed_settings, name)
    assert (result.status, result.counts["new"], result.counts["failed"]) == ("partial", 1, 8), result.line()
    assert [b["pattern"] for b in _bodies(factory, coll)] == ["[ipv4-addr:value = '198.51.100.9']"]
