"""A real streaming replica (pg_basebackup -R) behind EXCHANGE_DATABASE_REPLICA_URL: TAXII and
REST reads come from it, the ledger and every access decision from the primary, and a poller
reading a replica that lags misses nothing: it resumes from what it was served.

Lag is made exact by pausing the replica's replay (pg_wal_replay_pause) while the primary moves on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from exchange.config import Settings
from exchange.main import create_app
from tests.support.cli import environment, run
from tests.support.pgcluster import Pair, streaming_pair

pytestmark = [pytest.mark.postgres, pytest.mark.replica]
TAXII = "application/taxii+json;version=2.1"
OBJECTS = "/taxii2/root/collections/indicators/objects/"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
RETRY_SECONDS = 1.0  # how long reads stay on the primary after the replica failed


@dataclass
class Deployment:
    pair: Pair
    client: TestClient
    demo: dict[str, Any]

    def auth(self, who: str) -> tuple[str, str]:
        return self.demo[who]["id"], self.demo[who]["key"]

    def pull(self, who: str, **params: str) -> tuple[int, list[str], dict[str, str], dict[str, Any]]:
        answer = self.client.get(OBJECTS, params=params, auth=self.auth(who), headers={"Accept": TAXII})
        body = answer.json()
        return answer.status_code, [o["id"] for o in body.get("objects", [])], dict(answer.headers), body

    def publish(self) -> str:
        stix_id = f"indicator--{uuid.uuid4()}"
        indicator = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": stix_id,
            "created": "2026-01-02T03:04:05.000Z",
            "modified": "2026-01-02T03:04:05.000Z",
            "name": "replica test",
            "pattern": f"[ipv4-addr:value = '198.51.100.{uuid.uuid4().int % 250}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-02T03:04:05Z",
            "object_marking_refs": [GREEN],
        }
        answer = self.client.post(
            OBJECTS,
            content=json.dumps({"objects": [indicator]}),
            auth=self.auth("analyst"),
            headers={"Accept": TAXII, "Content-Type": TAXII},
        )
        assert answer.status_code == 202 and answer.json()["success_count"] == 1, answer.text
        return stix_id

    def primary_scalar(self, statement: str, **params: Any) -> Any:
        engine = create_engine(self.pair.primary_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text(statement), params).scalar()
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("replica")
    with streaming_pair() as pair:
        env = environment(tmp / "data", pair.primary_url, EXCHANGE_SECRET_KEY="r" * 40)
        done = run(env, "demo", "--json")
        assert done.returncode == 0, done.stderr
        pair.resume_and_catch_up()
        settings = Settings(
            data_dir=tmp / "data",
            database_url=pair.primary_url,
            database_replica_url=pair.replica_url,
            secret_key="r" * 40,
            key_cache_seconds=60,
            database_replica_retry_seconds=RETRY_SECONDS,
        )
        with TestClient(create_app(settings)) as client:
            yield Deployment(pair, client, json.loads(done.stdout))


@pytest.fixture
def lagging(deployment: Deployment) -> Iterator[Deployment]:
    """The replica stops replaying for the test; afterwards it catches up."""
    deployment.pair.pause_replay()
    try:
        yield deployment
    finally:
        deployment.pair.resume_and_catch_up()


@pytest.mark.parametrize("who", ["partner", "admin"])
def test_a_poller_on_a_lagging_replica_resumes_where_it_was_and_misses_nothing(
    lagging: Deployment, who: str
) -> None:
    status, before, headers, body = lagging.pull(who)
    assert status == 200 and before and body["more"] is False, (len(before), body.get("more"))
    resume = headers["x-taxii-date-added-last"]
    fresh = lagging.publish()  # committed on the primary, not yet replayed on the replica
    status, seen, headers, body = lagging.pull(who)
    assert fresh not in seen and seen == before  # the page was read from the replica
    status, seen, headers, body = lagging.pull(who, added_after=resume)
    # Nothing repeated either: what was released to it and received is known to the primary's
    # ledger, which the paused replica has not replayed.
    assert status == 200 and seen == [] and body["more"] is False
    # An empty page's resume point never runs past what the replica had.
    assert headers["x-taxii-date-added-last"] <= resume or who == "admin"
    resume = max(resume, headers["x-taxii-date-added-last"])
    lagging.pair.resume_and_catch_up()
    status, seen, headers, _ = lagging.pull(who, added_after=resume)
    assert seen == [fresh]


def test_the_ledger_is_written_on_the_primary_before_the_page_is_answered(lagging: Deployment) -> None:
    fresh_pull = lagging.pull("partner", limit="2")
    assert fresh_pull[0] == 200 and len(fresh_pull[1]) == 2
    credential = lagging.auth("partner")[0]
    recorded = lagging.primary_scalar(
        "SELECT count(*) FROM disclosure d JOIN delivery v ON v.pk = d.delivery_pk "
        "JOIN object_version o ON o.pk = d.object_version_pk WHERE v.credential_id = :c AND o.stix_id = :s",
        c=credential,
        s=fresh_pull[1][1],
    )
    assert recorded >= 1
    # And staff read the ledger from the primary, though the replica has not replayed it.
    answer = lagging.client.get(f"/api/v1/objects/{fresh_pull[1][1]}/recipients", auth=lagging.auth("admin"))
    assert answer.status_code == 200 and credential in answer.text


def test_rest_reads_come_from_the_replica(lagging: Deployment) -> None:
    fresh = lagging.publish()
    admin = lagging.auth("admin")
    assert lagging.client.get(f"/api/v1/objects/{fresh}", auth=admin).status_code == 404
    lagging.pair.resume_and_catch_up()
    assert lagging.client.get(f"/api/v1/objects/{fresh}", auth=admin).status_code == 200


def test_revocation_and_suspension_apply_at_once_whatever_the_replica_says(lagging: Deployment) -> None:
    admin = lagging.auth("admin")
    made = lagging.client.post("/api/v1/partners/cert-in/credentials", auth=admin, json={"name": "lag"})
    assert made.status_code == 201
    key = (made.json()["id"], made.json()["key"])
    # The new credential works at once (it exists only on the primary so far).
    ok = lagging.client.get(OBJECTS, auth=key, headers={"Accept": TAXII})
    assert ok.status_code == 200
    assert lagging.client.post(f"/api/v1/credentials/{key[0]}/revoke", auth=admin).status_code == 200
    assert lagging.client.get(OBJECTS, auth=key, headers={"Accept": TAXII}).status_code == 401
    suspended = lagging.client.patch("/api/v1/partners/cert-in", auth=admin, json={"status": "suspended"})
    assert suspended.status_code == 200
    try:
        refused = lagging.client.get(OBJECTS, auth=lagging.auth("partner"), headers={"Accept": TAXII})
        assert refused.status_code == 401
    finally:
        lagging.client.patch("/api/v1/partners/cert-in", auth=admin, json={"status": "active"})


def test_a_replica_that_is_down_sends_reads_to_the_primary_until_it_is_back(deployment: Deployment) -> None:
    # Last: it stops the replica, and starts it again at the end.
    deployment.pair.stop_replica()
    try:
        fresh = deployment.publish()  # on the primary only: the replica is not there to replay it
        for who in ("partner", "admin"):
            status, seen, _, _ = deployment.pull(who)
            assert status == 200 and fresh in seen, (who, status)
        rest = deployment.client.get(f"/api/v1/objects/{fresh}", auth=deployment.auth("admin"))
        assert rest.status_code == 200, rest.text
        health = deployment.client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok" and health.json()["replica"] == "unreachable"
    finally:
        deployment.pair.start_replica()
    deployment.pair.resume_and_catch_up()
    time.sleep(RETRY_SECONDS + 0.2)
    # Back on the replica once it answers again: a write it has not replayed is not seen.
    deployment.pair.pause_replay()
    try:
        later = deployment.publish()
        status, seen, _, _ = deployment.pull("admin")
        assert status == 200 and fresh in seen and later not in seen
        assert (
            deployment.client.get(f"/api/v1/objects/{later}", auth=deployment.auth("admin")).status_code
            == 404
        )
    finally:
        deployment.pair.resume_and_catch_up()
    assert deployment.client.get("/healthz").json()["replica"] == "ok"
