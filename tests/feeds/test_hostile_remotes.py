"""Remote servers that trickle, never finish their headers or answer with bombs: every run stops
at its limits, is recorded with a clear error and keeps what was already stored."""

from __future__ import annotations

import threading
import time

import pytest

from exchange.feed.service import FeedBusyError
from feeds import runner
from feeds.runner import begin_run, continue_run, run_feed
from tests.support.feeds import within


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
