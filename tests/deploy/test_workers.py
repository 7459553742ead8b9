"""Several API processes on one PostgreSQL store: any process answers any page of a paged pull,
a credential revoked through one process is refused by every other at once, and one scheduler
leads among the supervisor of `serve --workers 2` and an `exchange scheduler`."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support.cli import environment, run
from tests.support.databases import throwaway_postgres
from tests.support.processes import ServerProcess, serve
from tests.support.taxii import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.live]
TAXII = {"Accept": "application/taxii+json;version=2.1"}


@dataclass
class Cluster:
    env: dict[str, str]
    database_url: str
    demo: dict  # type: ignore[type-arg]
    urls: list[str]  # the `serve --workers 2` server first, then a single-process one
    many: ServerProcess

    def admin(self) -> tuple[str, str]:
        return self.demo["admin"]["id"], self.demo["admin"]["key"]

    def partner(self) -> tuple[str, str]:
        return self.demo["partner"]["id"], self.demo["partner"]["key"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("workers")
    with throwaway_postgres("exchange_workers") as url:
        env = environment(
            tmp / "data",
            url,
            EXCHANGE_SECRET_KEY="w" * 40,
            EXCHANGE_LOG_LEVEL="WARNING",
            EXCHANGE_SCHEDULER_LEASE_SECONDS="2",
            EXCHANGE_SCHEDULER_SYNC_SECONDS="0.5",
        )
        done = run(env, "demo", "--json")
        assert done.returncode == 0, done.stderr
        ports = [free_port(), free_port()]
        many = serve(env, ports[0], tmp / "many.log", "--workers", "2")
        try:
            single = serve(env, ports[1], tmp / "single.log", "--no-scheduler")
            try:
                yield Cluster(
                    env, url, json.loads(done.stdout), [f"http://127.0.0.1:{p}" for p in ports], many
                )
            finally:
                single.stop()
        finally:
            many.stop()


def _get(url: str, auth: tuple[str, str], **params: str) -> httpx.Response:
    # A new connection every time, so the kernel hands each request to whichever worker accepts.
    with httpx.Client(auth=auth, headers=TAXII | {"Connection": "close"}, timeout=30) as client:
        return client.get(url, params=params)


def test_every_page_of_a_paged_pull_is_answered_by_any_process(cluster: Cluster) -> None:
    partner = cluster.partner()
    path = "/taxii2/root/collections/indicators/objects/"
    whole = _get(cluster.urls[0] + path, partner)
    assert whole.status_code == 200
    expected = [o["id"] for o in whole.json()["objects"]]
    assert len(expected) >= 4
    seen: list[str] = []
    params = {"limit": "1"}
    for page in range(len(expected) + 2):
        served = _get(cluster.urls[page % 2] + path, partner, **params)
        assert served.status_code == 200, served.text
        body = served.json()
        seen += [o["id"] for o in body.get("objects", [])]
        if not body["more"]:
            break
        params = {"limit": "1", "next": body["next"]}
    assert seen == expected  # nothing lost, nothing repeated, whichever process answered


def test_a_cursor_from_one_process_is_bound_to_its_caller_on_every_other(cluster: Cluster) -> None:
    path = "/taxii2/root/collections/indicators/objects/"
    first = _get(cluster.urls[0] + path, cluster.partner(), limit="1").json()
    stolen = _get(cluster.urls[1] + path, cluster.admin(), limit="1", next=first["next"])
    assert stolen.status_code == 400
    forged = _get(cluster.urls[1] + path, cluster.partner(), limit="1", next=first["next"][:-2] + "AA")
    assert forged.status_code == 400


def test_a_credential_revoked_through_one_process_is_refused_by_all_at_once(cluster: Cluster) -> None:
    admin = cluster.admin()
    made = httpx.post(
        cluster.urls[1] + "/api/v1/partners/cert-in/credentials", auth=admin, json={"name": "to revoke"}
    )
    assert made.status_code in (200, 201), made.text
    credential = (made.json()["id"], made.json()["key"])
    path = "/taxii2/root/collections/"
    # Every worker has verified (and cached) the key: many fresh connections to each server.
    for _ in range(6):
        for url in cluster.urls:
            assert _get(url + path, credential).status_code == 200
    revoked = httpx.post(cluster.urls[1] + f"/api/v1/credentials/{credential[0]}/revoke", auth=admin)
    assert revoked.status_code == 200, revoked.text
    for _ in range(6):
        for url in cluster.urls:
            assert _get(url + path, credential).status_code == 401
            rest = httpx.get(url + "/api/v1/partners", headers={"Authorization": f"Bearer {credential[1]}"})
            assert rest.status_code == 401


def _leader(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT holder FROM scheduler_lease WHERE name = 'scheduler' AND expires_at > now()")
            ).first()
    finally:
        engine.dispose()
    return row[0] if row else None


def test_one_scheduler_leads_and_another_takes_over(cluster: Cluster, tmp_path: Path) -> None:
    # The supervisor of `serve --workers 2` offers to schedule; so does this process.
    standby = ServerProcess(cluster.env, ["scheduler"], tmp_path / "scheduler.log")
    try:
        deadline = time.monotonic() + 20
        while _leader(cluster.database_url) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        first = _leader(cluster.database_url)
        assert first is not None
        holders = set()
        for _ in range(10):  # the lease stays with one holder while it lives
            holders.add(_leader(cluster.database_url))
            time.sleep(0.3)
        assert holders == {first}
        if int(first.split(":")[1]) == standby.proc.pid:
            # Dies without handing over: the supervisor takes over once the lease runs out.
            standby.stop(signal.SIGKILL)
        else:
            # The supervisor leads (this test runs last: it stops the module's `serve --workers 2`,
            # with SIGTERM, which its workers follow; the lease is handed over, not waited out).
            cluster.many.stop()
        deadline = time.monotonic() + 15
        while _leader(cluster.database_url) in (None, first) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leader(cluster.database_url) not in (None, first)
    finally:
        standby.stop()
