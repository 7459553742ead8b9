"""The leading `exchange scheduler` killed with SIGKILL (no chance to give the lease up): the other
process leads within the lease (its length plus one renewal interval), and only one leads."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.bootstrap import initialise, migrate
from exchange.config import Settings
from exchange.database.core import make_engine, make_session_factory, session_scope
from exchange.feed import service as feed_service
from tests.support.cli import EXE, environment
from tests.support.databases import own_store
from tests.support.processes import stop_all

LEASE = 2.0


def _leader(factory) -> str | None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as db:
        state = feed_service.scheduler_state(db)
    return state["leader"] if state.get("leader") else None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """A store of the test's own: the lease row must not be anyone else's."""
    with own_store(request.param, tmp_path / "data", "exchange_lease") as settings:
        yield settings


def test_a_killed_leader_is_replaced_within_the_lease(own: Settings) -> None:
    engine = make_engine(own.sqlalchemy_url)
    migrate(engine)
    factory = make_session_factory(engine)
    with session_scope(factory, write=True) as db:
        initialise(db, own)
    env = environment(
        own.data_dir,
        own.database_url,
        EXCHANGE_SECRET_KEY=own.secret_key or "",
        EXCHANGE_SCHEDULER_LEASE_SECONDS=str(LEASE),
        EXCHANGE_SCHEDULER_SYNC_SECONDS="0.5",
        EXCHANGE_LOG_LEVEL="WARNING",
    )
    procs = [
        subprocess.Popen([EXE, "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        holders: set[int] = set()
        while time.monotonic() < deadline:
            leader = _leader(factory)
            if leader and int(leader.split(":")[1]) in {p.pid for p in procs}:
                holders.add(int(leader.split(":")[1]))
                break
            time.sleep(0.1)
        assert holders, "no scheduler process took the lease"
        victim = next(p for p in procs if p.pid in holders)
        other = next(p for p in procs if p is not victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed = time.monotonic()
        taken = None
        while time.monotonic() < killed + LEASE * 4 + 5:
            leader = _leader(factory)
            if leader and int(leader.split(":")[1]) == other.pid:
                taken = time.monotonic() - killed
                break
            time.sleep(0.05)
        assert taken is not None, "the surviving scheduler never took the lease"
        # Expiry (at most LEASE after the victim's last renewal) plus the survivor's next try
        # (every LEASE / 3), and a little for a loaded machine.
        assert taken <= LEASE + LEASE / 3 + 1.5, f"takeover took {taken:.2f} s"
    finally:
        stop_all(procs)
        engine.dispose()
