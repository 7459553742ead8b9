"""Fixtures for the adversarial suite: partners with agreements on the live server."""

from __future__ import annotations

import pytest

from tests.agreement.conftest import Partners


@pytest.fixture
def partners(live_server) -> Partners:  # type: ignore[no-untyped-def]
    return Partners(live_server)
