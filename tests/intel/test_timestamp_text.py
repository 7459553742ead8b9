"""Timestamps written by the exchange's own code keep four year digits before year 1000 (Linux
strftime("%Y") writes year 1 as "1", which no RFC 3339 reader, the exchange's included, accepts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.audit.service import utc_text
from exchange.intel.timestamps import text_to_us, us_to_text
from exchange.ui.i18n import when
from feeds.normalize import stix_time
from policies.engine import _timestamp

EARLY = datetime(1, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
EARLY_US = (EARLY - datetime(1970, 1, 1, tzinfo=UTC)) // (datetime.resolution)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (lambda: stix_time(EARLY), "0001-02-03T04:05:06.789Z"),
        (lambda: us_to_text(EARLY_US), "0001-02-03T04:05:06.789000Z"),
        (lambda: _timestamp(EARLY_US), "0001-02-03T04:05:06.789000Z"),
        (lambda: utc_text(int(EARLY.replace(microsecond=0).timestamp())), "0001-02-03T04:05:06Z"),
    ],
)
def test_early_years_are_written_with_four_digits(written, expected) -> None:  # type: ignore[no-untyped-def]
    assert written() == expected


def test_early_years_read_back() -> None:
    assert text_to_us(us_to_text(EARLY_US)) == EARLY_US
    assert 'datetime="0001-02-03T04:05:06Z">0001-02-03 04:05 UTC<' in str(when(EARLY))
