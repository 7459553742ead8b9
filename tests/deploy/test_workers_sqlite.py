"""`exchange serve --workers 2` on SQLite is allowed: writers in both processes are serialised
(WAL, BEGIN IMMEDIATE), nothing posted at once through both is lost, and date_added stays
strictly increasing. A bad worker count is refused before anything starts."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.cli import environment, run
from tests.support.processes import serve
from tests.support.taxii import free_port

pytestmark = pytest.mark.live
TAXII = "application/taxii+json;version=2.1"
GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"


def _indicator() -> dict[str, object]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-01-02T03:04:05.000Z",
        "modified": "2026-01-02T03:04:05.000Z",
        "pattern": f"[domain-name:value = 'w{uuid.uuid4().hex[:12]}.example']",
        "pattern_type": "stix",
        "valid_from": "2026-01-02T03:04:05Z",
        "object_marking_refs": [GREEN],
    }


def test_two_workers_on_sqlite_lose_no_write_and_keep_date_added_increasing(tmp_path: Path) -> None:
    env = environment(tmp_path / "data", EXCHANGE_LOG_LEVEL="WARNING")
    demo = json.loads(run(env, "demo", "--json").stdout)
    analyst = (demo["analyst"]["id"], demo["analyst"]["key"])
    port = free_port()
    server = serve(env, port, tmp_path / "serve.log", "--workers", "2", "--no-scheduler")
    url = f"http://127.0.0.1:{port}/taxii2/root/collections/indicators/"
    posted: list[str] = []
    failures: list[str] = []

    def post_some() -> None:
        for _ in range(4):
            objects = [_indicator(), _indicator()]
            with httpx.Client(auth=analyst, timeout=60, headers={"Connection": "close"}) as client:
                answer = client.post(
                    url + "objects/",
                    content=json.dumps({"objects": objects}),
                    headers={"Accept": TAXII, "Content-Type": TAXII},
                )
            if answer.status_code != 202 or answer.json()["success_count"] != 2:
                failures.append(answer.text[:300])
            else:
                posted.extend(str(o["id"]) for o in objects)

    try:
        threads = [threading.Thread(target=post_some) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        manifest = httpx.get(
            url + "manifest/", params={"limit": "1000"}, auth=analyst, headers={"Accept": TAXII}, timeout=60
        ).json()["objects"]
    finally:
        server.stop()
    stamps = [m["date_added"] for m in manifest]
    assert set(posted) <= {m["id"] for m in manifest} and len(posted) == 24
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_a_worker_count_below_one_is_refused(tmp_path: Path) -> None:
    done = run(environment(tmp_path / "data"), "serve", "--workers", "0")
    assert done.returncode == 2 and "at least 1" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was made
