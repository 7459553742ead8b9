"""A page's ledger writer: the request goes on only once the rows are on their way, and a writer
that fails before that never holds the page."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from taxii_server.backend import _Ledger


def test_the_request_goes_on_once_the_writer_holds_its_connection() -> None:
    steps: list[str] = []

    def write(under_way: Callable[[], None]) -> None:
        time.sleep(0.05)  # the connection being taken
        steps.append("held")
        under_way()
        time.sleep(0.05)  # the database's work
        steps.append("committed")

    ledger = _Ledger(write)
    assert steps == ["held"]
    ledger.wait()
    assert steps == ["held", "committed"]


def test_a_writer_failing_before_it_is_under_way_fails_the_page_without_holding_it() -> None:
    def write(under_way: Callable[[], None]) -> None:
        raise ConnectionError("the database went away")

    started = time.monotonic()
    ledger = _Ledger(write)
    with pytest.raises(ConnectionError):
        ledger.wait()
    assert time.monotonic() - started < 5


def test_without_hand_over_the_request_goes_on_at_once_and_waits_at_the_end() -> None:
    steps: list[str] = []

    def write(under_way: Callable[[], None]) -> None:
        time.sleep(0.05)
        under_way()
        steps.append("committed")

    ledger = _Ledger(write, hand_over=False)
    assert steps == []  # the request is signing meanwhile
    ledger.wait()
    assert steps == ["committed"]


def test_a_failed_writer_without_hand_over_still_fails_the_page() -> None:
    def write(under_way: Callable[[], None]) -> None:
        raise ConnectionError("the database went away")

    ledger = _Ledger(write, hand_over=False)
    with pytest.raises(ConnectionError):
        ledger.wait()
