"""Push delivery as administrators drive it: REST (credentials, run now, progress) and the CLI."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.support.cli import environment, run
from tests.support.partners import Partners, agreement_doc
from tests.support.stix import GREEN
from tests.support.taxii import TAXII
from tests.support.taxii_peer import start_medallion

PUSH_USER, PUSH_PASSWORD = "exchange-push", "pw-Admin-Push-" + "q" * 10


def _indicator() -> dict:
    n = uuid.uuid4().int
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-02-01T10:00:00.000Z",
        "modified": "2026-02-01T10:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '203.0.{n // 256 % 256}.{n % 256}']",
        "pattern_type": "stix",
        "valid_from": "2026-02-01T10:00:00Z",
        "object_marking_refs": [GREEN],
    }


@pytest.fixture
def peer(tmp_path):  # type: ignore[no-untyped-def]
    server = start_medallion(tmp_path, collections={"inbox": []}, users={PUSH_USER: PUSH_PASSWORD})
    yield server
    server.stop()


def test_push_over_rest_and_cli(live_server, admin, coll, peer, tmp_path) -> None:
    partners = Partners(live_server)

    def doc(slug):
        return agreement_doc(slug, read={"collections": [coll.alias], "max_tlp": "green"}) | {
            "push": {"url": peer.collection_url("inbox"), "every": "1h"}
        }

    slug, _ = partners.add(doc)
    api = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=60)
    objects = [_indicator() for _ in range(3)]
    posted = api.post(
        f"/taxii2/{live_server.settings.api_root}/collections/{coll.id}/objects/",
        json={"objects": objects},
        headers={"Content-Type": TAXII, "Accept": TAXII},
        auth=admin,
    )
    assert posted.status_code == 202, posted.text

    no_auth = api.post(f"/api/v1/push/{slug}/run")
    assert no_auth.status_code == 202
    set_auth = api.put(
        f"/api/v1/partners/{slug}/push-auth", json={"username": PUSH_USER, "password": PUSH_PASSWORD}
    )
    assert set_auth.status_code == 200 and set_auth.json()["has_push_auth"] is True
    assert (
        PUSH_PASSWORD not in set_auth.text and PUSH_PASSWORD not in api.get(f"/api/v1/partners/{slug}").text
    )
    assert PUSH_PASSWORD not in api.get("/api/v1/audit").text

    deadline = time.monotonic() + 30
    progress: list = []
    while time.monotonic() < deadline:
        progress = api.get(f"/api/v1/push/{slug}").json()
        if progress and progress[0]["consecutive_failures"] >= 1:
            break
        time.sleep(0.1)
    assert progress and "401" in progress[0]["last_error"], progress  # the run before credentials were set

    assert api.post(f"/api/v1/push/{slug}/run").status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progress = api.get(f"/api/v1/push/{slug}").json()
        if progress[0]["delivered_total"] == 3:
            break
        time.sleep(0.1)
    assert progress[0]["delivered_total"] == 3 and progress[0]["consecutive_failures"] == 0
    assert {o["id"] for o in peer.objects("inbox", PUSH_USER)} == {o["id"] for o in objects}
    assert api.post("/api/v1/push/no-such-partner/run").status_code == 404
    stranger, _ = partners.add(
        lambda s: agreement_doc(s, read={"collections": [coll.alias], "max_tlp": "green"})
    )
    refused = api.post(f"/api/v1/push/{stranger}/run")
    assert refused.status_code == 400 and "no push delivery" in refused.text

    env = environment(
        live_server.settings.data_dir,
        live_server.settings.database_url,
        EXCHANGE_SECRET_KEY=live_server.settings.secret_key or "",
    )
    more = _indicator()
    api.post(
        f"/taxii2/{live_server.settings.api_root}/collections/{coll.id}/objects/",
        json={"objects": [more]},
        headers={"Content-Type": TAXII, "Accept": TAXII},
        auth=admin,
    )
    ran = run(env, "push", "run", slug)
    assert ran.returncode == 0, ran.stderr
    assert "1" in ran.stdout and slug in ran.stdout
    status = run(env, "push", "status", slug)
    assert "delivered 4" in status.stdout, status.stdout
    env["PUSH_PW"] = "another-" + PUSH_PASSWORD
    changed = run(env, "partner", "push-auth", slug, "--username", PUSH_USER, "--password-env", "PUSH_PW")
    assert (
        changed.returncode == 0
        and "set" in changed.stdout
        and "another-" not in changed.stdout + changed.stderr
    )
    cleared = run(env, "partner", "push-auth", slug, "--clear")
    assert cleared.returncode == 0
    assert api.get(f"/api/v1/partners/{slug}").json()["has_push_auth"] is False
