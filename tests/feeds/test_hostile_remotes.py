"""Remote servers that trickle, never finish their headers or answer with bombs: every run stops
at its limits, is recorded with a clear error and keeps what was already stored."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.feed.service import FeedBusyError
from exchange.push import service as push_service
from exchange.push.service import push_status
from exchange.signing import KeyRing, default_directory
from feeds import runner
from feeds.delivery import push_partner
from feeds.jsonstream import StreamError, bundle_objects
from feeds.runner import begin_run, continue_run, run_feed
from tests.support.feeds import within
from tests.support.partners import Partners, agreement_doc
from tests.support.stix import indicator, publish


def test_a_feed_that_trickles_bytes_stops_at_the_runs_time_limit(
    feed_server, feeds, factory, feed_settings
) -> None:
    def trickle():  # type: ignore[no-untyped-def]
        for _ in range(600):  # one byte every 0.2 s, no length: each read is well within the timeout
            yield b"1"
            time.sleep(0.2)

    url = feed_server.serve("/trickle.txt", trickle, close_delimited=True)
    name, _ = feeds.add("text", url, timeout=2)
    limited = feed_settings.model_copy(update={"feed_max_run_seconds": 3.0})
    started = time.monotonic()
    result = within(15, lambda: run_feed(factory, limited, name))
    assert result.status == "failed" and "longer than its time limit" in (result.error or ""), result
    assert time.monotonic() - started < 6
    [run] = feeds.runs(name)
    assert run.status == "failed" and run.error == result.error and feeds.get(name).health == "failing"


def test_a_feed_that_trickles_its_headers_fails_within_its_timeout(
    feed_server, feeds, factory, feed_settings
) -> None:
    url = feed_server.serve("/slow-head.txt", trickle_head=0.3)  # a header line every 0.3 s
    name, _ = feeds.add("text", url, timeout=1)
    started = time.monotonic()
    result = within(15, lambda: run_feed(factory, feed_settings, name))
    assert result.status == "failed", result
    assert "did not answer within 1 s (no complete response head)" in (result.error or ""), result
    assert time.monotonic() - started < 4


def test_a_run_slower_than_its_lease_keeps_its_claim(
    feed_server, feeds, factory, feed_settings, monkeypatch
) -> None:
    monkeypatch.setattr(runner, "MIN_LEASE_SECONDS", 1.0)
    lines = [f"198.51.100.{i}\n".encode() for i in range(1, 9)]

    def slow():  # type: ignore[no-untyped-def]
        for line in lines:  # a slow feed, no batch full until the end: 4 s, four leases
            yield line
            time.sleep(0.5)

    url = feed_server.serve("/slow.txt", slow)
    name, _ = feeds.add("text", url, timeout=5)
    limited = feed_settings.model_copy(update={"feed_max_run_seconds": 5.0})  # lease: 1 s
    first = begin_run(factory, limited, name, holder="first")
    results = []
    thread = threading.Thread(target=lambda: results.append(continue_run(factory, limited, first)))
    thread.start()
    try:
        for _ in range(3):
            time.sleep(0.9)
            with pytest.raises(FeedBusyError):
                begin_run(factory, limited, name, holder="second")
    finally:
        thread.join(15)
    assert not thread.is_alive()
    assert results[0].status == "ok" and results[0].counts["new"] == len(lines), results[0]
    assert [r.status for r in feeds.runs(name)] == ["ok"]


COLLECTION = "/taxii2/root/collections/5f0a/"
TAXII = "application/taxii+json;version=2.1"


def _push_target(live_server, http, feed_server, **route: Any) -> str:  # type: ignore[no-untyped-def]
    """A partner whose push goes to `feed_server` (answering as `route` says), with one object due."""
    feed_server.serve(COLLECTION + "objects/", content_type=TAXII, **route)
    coll = live_server.collection(default_tlp="green")
    doc = agreement_doc("x", read={"collections": [coll.alias], "max_tlp": "green"})
    slug, _ = Partners(live_server).add(
        lambda slug: doc | {"partner": slug, "push": {"url": feed_server.base + COLLECTION, "every": "1h"}}
    )
    with live_server.session() as db:
        push_service.set_push_auth(
            db, slug, {"username": "pushuser", "password": PUSH_PASSWORD}, actor="test"
        )
    publish(http, live_server.collection_url(coll), [indicator()])
    return slug


PUSH_PASSWORD = "pw-SECRET-" + uuid.uuid4().hex


def _failed_push(live_server, factory, settings, slug: str, caplog) -> str:  # type: ignore[no-untyped-def]
    keyring = KeyRing(default_directory(settings))
    with caplog.at_level(logging.INFO, logger="feeds.delivery"):
        summary = within(15, lambda: push_partner(factory, settings, keyring, slug, holder="test"))
    assert summary.status == "failed" and summary.error, summary.line()
    with live_server.session() as db:
        [state] = push_status(db, slug)
    assert state["last_error"] == summary.error and state["consecutive_failures"] == 1
    assert state["delivered_total"] == 0
    assert PUSH_PASSWORD not in summary.error and PUSH_PASSWORD not in caplog.text
    return summary.error


@pytest.mark.live
def test_a_push_target_that_trickles_its_answer_is_cut_off_at_the_posts_limit(  # type: ignore[no-untyped-def]
    live_server, http, factory, settings, feed_server, caplog
) -> None:
    def trickle():  # type: ignore[no-untyped-def]
        for _ in range(600):  # 202, then a space every 0.2 s: each read well within the timeout
            yield b" "
            time.sleep(0.2)

    slug = _push_target(live_server, http, feed_server, body=trickle, status=202, close_delimited=True)
    limited = settings.model_copy(update={"push_timeout_seconds": 2.0, "push_max_post_seconds": 3.0})
    started = time.monotonic()
    error = _failed_push(live_server, factory, limited, slug, caplog)
    assert "took longer than 3 s" in error, error
    assert time.monotonic() - started < 8


@pytest.mark.live
def test_a_push_target_answering_with_a_gzip_bomb_costs_no_memory(  # type: ignore[no-untyped-def]
    live_server, http, factory, settings, feed_server, caplog
) -> None:
    bomb = gzip.compress(b" " * (48 * 1024 * 1024), compresslevel=6)  # 48 MiB in about 50 KB
    slug = _push_target(
        live_server, http, feed_server, body=bomb, status=202, headers={"Content-Encoding": "gzip"}
    )
    tracemalloc.start()
    try:
        error = _failed_push(live_server, factory, settings, slug, caplog)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "HTTP 202 with more than 1,048,576 bytes" in error, error
    assert peak < 16 * 1024 * 1024, f"{peak:,} bytes at peak for a 1 MiB status resource"


@pytest.mark.parametrize("kind", ["text", "csv"])
def test_a_line_without_end_costs_linear_time_and_is_skipped_with_a_count(
    feed_server, feeds, factory, feed_settings, kind
) -> None:
    # 32 MiB with no line end (about 32 KB of gzip) between two good lines: split again after
    # every 64 KiB chunk, it took about 10 s; read once, well under a second.
    head = b"indicator\n" if kind == "csv" else b""
    body = head + b"198.51.100.1\n" + b"a" * (32 * 1024 * 1024) + b"\n198.51.100.2\n"
    url = feed_server.serve(
        f"/long-line.{kind}", gzip.compress(body, compresslevel=6), headers={"Content-Encoding": "gzip"}
    )
    name, _ = feeds.add(kind, url)
    started = time.monotonic()
    result = within(20, lambda: run_feed(factory, feed_settings, name))
    seconds = time.monotonic() - started
    # A bound on the blow-up, not a speed figure: the quadratic splitter took 9 s alone, the
    # linear one 0.3 s; the suite runs this beside other work on two cores.
    assert seconds < 6, f"{seconds:.1f} s for one 32 MiB line"
    assert (result.status, result.counts["new"], result.counts["failed"]) == ("partial", 2, 1), result
    [run] = feeds.runs(name)
    line = 3 if kind == "csv" else 2
    assert [(f["id"], f["message"]) for f in run.failures] == [
        (f"line {line}", "longer than 65,536 bytes: skipped")
    ]


def _stream(*parts: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    data = b"".join(parts)
    for at in range(0, len(data), size):
        yield data[at : at + size]


GOOD = [indicator(n) for n in (1, 2)]


def _good(n: int) -> bytes:
    return json.dumps(GOOD[n - 1]).encode()


@pytest.mark.parametrize(
    ("hostile", "parsed"),
    [
        # 2 MiB of empty arrays in one element (JSON, just not an object: ingest refuses it),
        # asked of the decoder after every 64 KiB chunk; 2,000 levels deep, past the decoder's
        # recursion and the strict parse's 64 levels (refused alone), rescanned in Python.
        pytest.param(b"[" + b"[]," * (700 * 1024) + b"[]]", True, id="wide"),
        pytest.param(b"[" * 2000 + b"0," * (2 * 1024 * 1024) + b"0" + b"]" * 2000, False, id="deep"),
    ],
)
def test_one_big_element_costs_linear_time_and_stands_alone(hostile: bytes, parsed: bool) -> None:
    head = b'{"type": "bundle", "id": "bundle--' + str(uuid.uuid4()).encode() + b'", "objects": ['
    chunks = _stream(head, _good(1), b",", hostile, b",", _good(2), b"]}")
    started = time.monotonic()
    elements = within(20, lambda: list(bundle_objects(chunks)))
    seconds = time.monotonic() - started
    # A bound on the blow-up, not a speed figure: re-decoding took 14.7 s (wide) and 8.1 s (deep)
    # alone, the linear reader 1.4 s and 0.02 s; 3.1 s was seen beside the rest of the suite.
    assert seconds < 7, f"{seconds:.1f} s for one {len(hostile):,}-byte element"
    assert [e.error is None for e in elements] == [True, parsed, True], elements
    assert [e.value["id"] for e in elements if isinstance(e.value, dict)] == [g["id"] for g in GOOD]


def test_big_members_beside_the_objects_are_refused_quickly_after_the_objects() -> None:
    # Four 3 MiB members besides objects: each read to its end and kept in memory before.
    pad = b"[" + b"0," * (1536 * 1024) + b"0]"
    parts = [b'{"type": "bundle", "objects": [', _good(1), b"]"]
    parts += [b', "x_pad_%d": ' % i + pad for i in range(4)]
    started = time.monotonic()
    got: list[Any] = []

    def read() -> None:
        got.extend(bundle_objects(_stream(*parts, b"}")))

    with pytest.raises(StreamError, match="members other than objects take more than 1,048,576 bytes"):
        within(20, read)
    assert time.monotonic() - started < 6  # refused at the cap, not after reading 12 MiB
    assert [e.value["id"] for e in got] == [GOOD[0]["id"]]
