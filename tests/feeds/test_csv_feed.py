"""CSV IoC lists: column mapping by name or index, kind columns, labels, first_seen, bad rows."""

from __future__ import annotations

import json

from sqlalchemy import select

from exchange.database.core import session_scope
from exchange.intel.models import ObjectVersion
from feeds.runner import run_feed

CSV = b"""# exported 2026-05-01
indicator,type,comment,tags,first_seen
198.51.100.5,ip-dst,"C2, seen in phishing",apt;botnet,2026-03-01
evil.example.com,domain,"multi
line",,1767225600
d41d8cd98f00b204e9800998ecf8427e,md5,,malware,2026-03-02T10:00:00Z
not-valid-at-all!,domain,,,
198.51.100.6,ip-dst,,,yesterday
"""


def stored(factory, coll) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        bodies = [
            json.loads(b)
            for b in db.scalars(select(ObjectVersion.body).where(ObjectVersion.collection_pk == coll.pk))
        ]
    return {b["name"]: b for b in bodies}


def test_columns_by_name(feed_server, feeds, factory, feed_settings) -> None:
    url = feed_server.serve("/iocs.csv", CSV, content_type="text/csv")
    options = {
        "columns": {
            "value": "indicator",
            "kind": "type",
            "description": "comment",
            "labels": "tags",
            "first_seen": "first_seen",
        }
    }
    name, coll = feeds.add("csv", url, tlp="green", options=options)
    result = run_feed(factory, feed_settings, name)
    assert result.status == "partial", result.line()
    assert (result.counts["fetched"], result.counts["new"], result.counts["failed"]) == (5, 3, 2)
    got = stored(factory, coll)
    assert got["198.51.100.5"]["description"] == "C2, seen in phishing"
    assert got["198.51.100.5"]["labels"] == ["apt", "botnet"]
    assert got["198.51.100.5"]["valid_from"] == "2026-03-01T00:00:00.000Z"
    assert got["evil.example.com"]["description"] == "multi\nline"
    assert got["evil.example.com"]["valid_from"] == "2026-01-01T00:00:00.000Z"
    assert (
        got["d41d8cd98f00b204e9800998ecf8427e"]["pattern"]
        == "[file:hashes.'MD5' = 'd41d8cd98f00b204e9800998ecf8427e']"
    )
    failures = feeds.runs(name)[0].failures
    assert {f["id"] for f in failures} == {"line 7", "line 8"}  # physical lines (a quoted field spans 4-5)
    assert any("first_seen" in f["message"] for f in failures)
    again = run_feed(factory, feed_settings, name)
    assert again.counts["fetched"] == 0 and feed_server.routes["/iocs.csv"].conditional_hits == 1


def test_columns_by_index_without_header_and_a_missing_column(
    feed_server, feeds, factory, feed_settings
) -> None:
    url = feed_server.serve("/plain.csv", b"1;198.51.100.70\n2;198.51.100.71\n")
    name, coll = feeds.add("csv", url, options={"header": False, "delimiter": ";", "columns": {"value": 1}})
    result = run_feed(factory, feed_settings, name)
    assert result.counts["new"] == 2 and set(stored(factory, coll)) == {"198.51.100.70", "198.51.100.71"}
    url = feed_server.serve("/other.csv", b"a,b\n1,2\n")
    name, _ = feeds.add("csv", url, options={"columns": {"value": "indicator"}})
    failed = run_feed(factory, feed_settings, name)
    assert failed.status == "failed" and "no column 'indicator'" in (failed.error or "")
