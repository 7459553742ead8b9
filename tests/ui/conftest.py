"""The pages' fixtures: one exchange on SQLite per module, its admin, analyst and partner keys.

The pages are the same on both databases (they call the services the REST tests cover on both),
so they run on SQLite only: browser time is the expensive part of CI.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exchange.main import create_app
from feeds.launcher import Launcher
from tests.support.pages import Exchange, make_exchange


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    ex = make_exchange(tmp_path_factory)
    yield ex
    ex.engine.dispose()


@pytest.fixture(scope="module")
def app(exchange: Exchange):  # type: ignore[no-untyped-def]
    return create_app(exchange.settings, feeds=Launcher)
