"""Feeds that misbehave: hang, fail then recover, send garbage, never end; and secrets stay out
of errors and logs."""

from __future__ import annotations

import json
import logging
import os
import tracemalloc
import uuid

import pytest
from sqlalchemy import func, select

from exchange.database.core import session_scope
from exchange.feed import service as feed_service
from exchange.intel.models import ObjectVersion
from feeds.jsonstream import bundle_objects
from feeds.runner import run_feed


def count(factory, coll) -> int:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        return db.scalar(
            select(func.count()).select_from(ObjectVersion).where(ObjectVersion.collection_pk == coll.pk)
        )


def test_a_hanging_feed_times_out(feed_server, feeds, factory, feed_settings) -> None:
    url = feed_server.serve("/slow.txt", b"198.51.100.1\n", hang=3.0)
    name, coll = feeds.add("text", url, timeout=1)
    result = run_feed(factory, feed_settings, name)
    assert result.status == "failed" and "did not answer within 1 s" in (result.error or "")
    assert result.seconds < 2.8 and feeds.get(name).health == "failing" and count(factory, coll) == 0


def test_a_feed_that_stops_sending_mid_way_times_out(feed_server, feeds, factory, feed_settings) -> None:
    import time

    def dribble():  # type: ignore[no-untyped-def]
        yield b"198.51.100.2\n"
        time.sleep(3)
        yield b"198.51.100.3\n"

    url = feed_server.serve("/stall.txt", dribble)
    name, _ = feeds.add("text", url, timeout=1)
    result = run_feed(factory, feed_settings, name)
    assert result.status == "failed" and "stopped sending" in (result.error or "")


def test_server_errors_then_recovery(feed_server, feeds, factory, feed_settings) -> None:
    url = feed_server.serve("/flaky.txt", b"198.51.100.4\n", fail_first=3)
    name, coll = feeds.add("text", url)
    healths = []
    for _ in range(3):
        result = run_feed(factory, feed_settings, name)
        assert result.status == "failed" and "HTTP 500" in (result.error or "")
        healths.append(feeds.get(name).health)
    assert healths == ["failing", "failing", "unhealthy"]
    assert run_feed(factory, feed_settings, name).status == "ok"
    view = feeds.get(name)
    assert (view.health, view.consecutive_failures, count(factory, coll)) == ("ok", 0, 1)


def test_garbage_is_refused_with_a_reason_and_nothing_stored(
    feed_server, feeds, factory, feed_settings
) -> None:
    for body, words in (
        (os.urandom(4096), "not UTF-8"),
        (b"<html><body>Login</body></html>", "expected '{'"),
        (b'{"type": "report", "objects": []}', "not a STIX bundle"),
        (b"", "empty"),
    ):
        url = feed_server.serve(f"/g-{uuid.uuid4().hex}.json", body)
        name, coll = feeds.add("stix-bundle", url)
        result = run_feed(factory, feed_settings, name)
        assert result.status == "failed" and words in (result.error or ""), (words, result.error)
        assert count(factory, coll) == 0
    url = feed_server.serve("/g.txt", b"<html>\n<body>nothing here</body>\n</html>\n")
    name, coll = feeds.add("text", url)
    result = run_feed(factory, feed_settings, name)
    assert (result.status, result.counts["failed"], count(factory, coll)) == ("partial", 3, 0)


def test_a_bundle_cut_off_keeps_the_complete_batches(feed_server, feeds, factory, feed_settings) -> None:
    objects = [
        {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": f"ipv4-addr--{uuid.uuid4()}",
            "value": f"10.1.{i // 250}.{i % 250}",
        }
        for i in range(450)
    ]
    text = json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects})
    url = feed_server.serve("/cut.json", text[: len(text) * 3 // 4].encode())
    name, coll = feeds.add("stix-bundle", url)  # batches of 200 (feed_settings)
    result = run_feed(factory, feed_settings, name)
    assert result.status == "failed" and "ends inside" in (result.error or "")
    assert count(factory, coll) >= 200
    assert feed_server.routes["/cut.json"].requests == 1
    run_feed(factory, feed_settings, name)
    assert feed_server.routes["/cut.json"].requests == 2  # no validators were saved: read again in full


def test_an_endless_feed_stops_at_the_size_limit(feed_server, feeds, factory, feed_settings) -> None:
    def endless():  # type: ignore[no-untyped-def]
        n = 0
        while True:
            n += 1
            yield b"".join(f"45.{n % 200}.{i // 250}.{i % 250}\n".encode() for i in range(1000))

    url = feed_server.serve("/endless.txt", endless)
    name, coll = feeds.add("text", url)
    limited = feed_settings.model_copy(update={"feed_max_bytes": 128 * 1024})
    result = run_feed(factory, limited, name)
    assert result.status == "failed" and "more than the limit" in (result.error or "")
    assert result.counts["new"] > 0 and count(factory, coll) == result.counts["new"]


def test_parsing_a_large_bundle_stream_uses_little_memory() -> None:
    one = json.dumps(
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid4()}",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "pattern": "[ipv4-addr:value = '10.0.0.1']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
            "description": "x" * 400,
        }
    ).encode()
    total = 100_000  # about 60 MB of bundle

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"type": "bundle", "id": "bundle--' + str(uuid.uuid4()).encode() + b'", "objects": ['
        for i in range(total):
            yield (b"," if i else b"") + one
        yield b"]}"

    tracemalloc.start()
    try:
        seen = sum(1 for element in bundle_objects(chunks()) if element.error is None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total
    assert peak < 5 * 1024 * 1024, f"peak {peak:,} bytes for a {total * len(one):,}-byte bundle"


def test_credentials_stay_out_of_errors_and_logs(feed_server, feeds, factory, feed_settings, caplog) -> None:
    password, key = "P4ss-" + uuid.uuid4().hex, "K3y-" + uuid.uuid4().hex
    url = feed_server.serve("/private.txt", b"", status=403) + f"?apikey={key}&page=1"
    name, _ = feeds.add("text", url, auth={"username": "reader", "password": password})
    caplog.set_level(logging.DEBUG)
    result = run_feed(factory, feed_settings, name)
    assert (
        result.status == "failed" and "403" in (result.error or "") and "apikey=***" in (result.error or "")
    )
    stored_error = feeds.runs(name)[0].error or ""
    for secret in (password, key):
        assert secret not in (result.error or "") and secret not in stored_error and secret not in caplog.text


def test_a_pattern_that_breaks_the_validator_fails_alone(feed_server, feeds, factory, feed_settings) -> None:
    from tests.support.stix import indicator

    good = [indicator(i) for i in range(50)]
    hostile = indicator(99, pattern="(" * 5_000 + "[ipv4-addr:value = '1.2.3.4']" + ")" * 5_000)
    text = json.dumps(
        {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [*good[:25], hostile, *good[25:]]}
    )
    url = feed_server.serve("/deep-pattern.json", text.encode(), etag=False)
    name, coll = feeds.add("stix-bundle", url)
    for _ in range(2):  # run after run, the same: the good ones stored, the bad one named
        result = run_feed(factory, feed_settings, name)
        assert result.status == "partial", result
        assert result.counts["failed"] == 1 and count(factory, coll) == 50
    assert result.counts["unchanged"] == 50
    with session_scope(factory) as db:
        run = feed_service.runs(db, feed_service.get_by_name(db, name), limit=1)[0]
        named = json.loads(run.failures)
    assert [f["id"] for f in named] == [hostile["id"]] and "pattern" in named[0]["message"]


def _gzip_bomb(head: bytes, filler: bytes, tail: bytes, size: int) -> bytes:
    import gzip

    return gzip.compress(head + filler * (size // len(filler)) + tail, compresslevel=6)


@pytest.mark.parametrize("kind", ["text", "csv", "stix-bundle", "taxii21"])
def test_every_feed_kind_counts_decoded_bytes_against_its_limit(
    feed_server, feeds, factory, feed_settings, kind
) -> None:
    expanded = 40 * 1024 * 1024
    gzip = {"Content-Encoding": "gzip"}
    if kind in ("text", "csv"):
        url = feed_server.serve(
            f"/bomb-{kind}", _gzip_bomb(b"198.51.100.9\n#", b" ", b"\n", expanded), headers=gzip
        )
    elif kind == "stix-bundle":
        head = b'{"type": "bundle", "id": "bundle--' + str(uuid.uuid4()).encode() + b'", "objects": ['
        url = feed_server.serve("/bomb.json", _gzip_bomb(head, b" ", b"]}", expanded), headers=gzip)
    else:
        taxii = "application/taxii+json;version=2.1"
        coll_id = str(uuid.uuid4())
        base = f"/taxii2/root/collections/{coll_id}/"
        info = {"id": coll_id, "title": "bomb", "can_read": True, "can_write": False}
        feed_server.serve(base, json.dumps(info).encode(), content_type=taxii)
        envelope = _gzip_bomb(b'{"more": false, "objects": [', b" ", b"]}", expanded)
        feed_server.serve(base + "objects/", envelope, content_type=taxii, headers=gzip)
        url = feed_server.base + base
    name, coll = feeds.add(kind, url)
    limited = feed_settings.model_copy(update={"feed_max_bytes": 1024 * 1024})
    tracemalloc.start()
    try:
        result = run_feed(factory, limited, name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "failed" and "more than the limit of 1,048,576 bytes" in (result.error or ""), (
        result
    )
    assert peak < 16 * 1024 * 1024, f"{peak:,} bytes at peak for a 1 MB limit"
    assert count(factory, coll) == 0 or kind != "taxii21"
