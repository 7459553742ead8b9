"""Feeds as administrators manage them: REST /api/v1/feeds, the CLI, and /metrics."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.support import cli

SECRET = "s3cret-feed-password-" + "z" * 8


@pytest.fixture
def api(live_server, admin):  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {admin[1]}"}, timeout=60
    ) as client:
        yield client


def _feed(url: str, coll: str, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"name": f"api-{uuid.uuid4().hex[:8]}", "kind": "text", "url": url, "collection": coll, **extra}


def _wait_for_run(api: httpx.Client, name: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = api.get(f"/api/v1/feeds/{name}/runs").json()
        if runs and runs[0]["status"] != "running":
            return runs[0]
        time.sleep(0.1)
    raise AssertionError("the run did not finish within 60 s")


def test_add_run_inspect_disable_remove_over_rest(api, live_server, feed_server, coll) -> None:
    url = feed_server.serve("/api.txt", b"198.51.100.20\n198.51.100.21\nnot-a-value!\n")
    body = _feed(
        url,
        coll.alias,
        every="15m",
        tlp="green",
        confidence=70,
        auth={"username": "reader", "password": SECRET},
    )
    created = api.post("/api/v1/feeds", json=body)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["every"] == "15m" and view["tlp"] == "green" and view["has_auth"] is True
    assert SECRET not in created.text and "password" not in created.text

    started = api.post(f"/api/v1/feeds/{body['name']}/run")
    assert started.status_code == 202, started.text
    run = _wait_for_run(api, body["name"])
    assert (run["status"], run["new"], run["failed"]) == ("partial", 2, 1)
    assert run["failures"][0]["id"] == "line 3"
    assert feed_server.routes["/api.txt"].seen_headers[0]["Authorization"].startswith("Basic ")

    listed = {f["name"]: f for f in api.get("/api/v1/feeds").json()}
    assert listed[body["name"]]["last_run"]["id"] == run["id"]
    assert listed[body["name"]]["health"] == "ok"
    assert SECRET not in api.get("/api/v1/feeds").text

    assert api.patch(f"/api/v1/feeds/{body['name']}", json={"enabled": False}).json()["enabled"] is False
    metrics = api.get("/metrics")
    assert metrics.status_code == 200
    assert f'exchange_feed_health{{feed="{body["name"]}",health="ok"}} 1' in metrics.text
    assert f'exchange_feed_enabled{{feed="{body["name"]}"}} 0' in metrics.text
    assert 'exchange_objects_ingested_total{origin="feed"}' in metrics.text
    assert api.delete(f"/api/v1/feeds/{body['name']}").status_code == 204
    assert api.get(f"/api/v1/feeds/{body['name']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"kind": "rss"}, 422, "kind"),
        ({"url": "ftp://127.0.0.1/x"}, 400, "http"),
        ({"url": "http://user:pw@127.0.0.1/x"}, 400, "credentials"),
        ({"collection": "no-such-collection"}, 400, "unknown collection"),
        ({"every": "5s"}, 400, "minimum"),
        ({"every": "1h", "cron": "0 * * * *"}, 400, "not both"),
        ({"cron": "61 * * * *"}, 400, "cron"),
        ({"tlp": "purple"}, 400, "TLP"),
        ({"confidence": 101}, 422, "confidence"),
        ({"options": {"nonsense": 1}}, 400, "unknown option"),
        ({"ca_bundle": "not a certificate"}, 400, "PEM"),
        ({"name": "Bad Name"}, 400, "feed name"),
    ],
)
def test_bad_feed_definitions_are_refused_with_a_reason(api, coll, change, status, words) -> None:
    answer = api.post("/api/v1/feeds", json=_feed("http://127.0.0.1:9/x", coll.alias) | change)
    assert answer.status_code == status, answer.text
    assert words.lower() in answer.text.lower()


def test_only_administrators_manage_feeds(live_server, coll) -> None:
    assert httpx.get(f"{live_server.url}/api/v1/feeds").status_code == 401
    assert httpx.get(f"{live_server.url}/metrics").status_code == 401
    _, analyst_key = live_server.credential("analyst")
    answer = httpx.post(
        f"{live_server.url}/api/v1/feeds",
        json=_feed("http://127.0.0.1:9/", coll.alias),
        headers={"Authorization": f"Bearer {analyst_key}"},
    )
    assert answer.status_code == 403
    assert (
        httpx.get(
            f"{live_server.url}/metrics", headers={"Authorization": f"Bearer {analyst_key}"}
        ).status_code
        == 200
    )


def test_a_running_feed_is_not_started_twice(api, feed_server, coll) -> None:
    url = feed_server.serve("/slow.txt", b"198.51.100.30\n", hang=2.0)
    body = _feed(url, coll.alias)
    assert api.post("/api/v1/feeds", json=body).status_code == 201
    assert api.post(f"/api/v1/feeds/{body['name']}/run").status_code == 202
    again = api.post(f"/api/v1/feeds/{body['name']}/run")
    assert again.status_code == 409 and "already running" in again.text
    assert _wait_for_run(api, body["name"])["status"] == "ok"
    assert api.post("/api/v1/feeds/no-such-feed/run").status_code == 404


def test_feed_commands(env, feed_server) -> None:
    def run(*args: str) -> cli.Result:
        return cli.run(env, *args)

    assert run("init").returncode == 0
    url = feed_server.serve("/cli.txt", b"# list\n198.51.100.40\nhttp://evil.example.org/a\n")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    env["FEED_PASSWORD"] = SECRET
    added = run(
        "feed",
        "add",
        name,
        "--kind",
        "text",
        "--url",
        url,
        "--collection",
        "indicators",
        "--every",
        "2h",
        "--tlp",
        "clear",
        "--username",
        "u",
        "--password-env",
        "FEED_PASSWORD",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["every"] == "2h" and SECRET not in added.stdout
    ran = run("feed", "run", name)
    assert ran.returncode == 0, ran.stderr
    assert "new 2" in ran.stdout and "fetched 2" in ran.stdout
    assert "fetched 2" in ran.stderr  # the progress line
    listed = run("feed", "list")
    assert name in listed.stdout and "ok" in listed.stdout and SECRET not in listed.stdout
    assert run("feed", "disable", name).stdout.strip() == f"feed {name} disabled"
    listed_json = {f["name"]: f for f in json.loads(run("feed", "list", "--json").stdout)}
    assert listed_json[name]["enabled"] is False and listed_json[name]["health"] == "ok"
    runs = json.loads(run("feed", "runs", name, "--json").stdout)
    assert runs[0]["new"] == 2
    missing = run("feed", "run", "no-such-feed")
    assert missing.returncode == 1 and "no feed named" in missing.stderr
    no_secret = run(
        "feed",
        "add",
        f"{name}-2",
        "--kind",
        "text",
        "--url",
        url,
        "--collection",
        "indicators",
        "--username",
        "u",
        "--password-env",
        "UNSET_VARIABLE_X",
    )
    assert no_secret.returncode == 1 and "UNSET_VARIABLE_X" in no_secret.stderr


def test_scheduler_state_is_visible_to_administrators(api, factory) -> None:
    from datetime import timedelta

    from exchange.database.core import session_scope
    from exchange.database.types import utcnow
    from feeds.lease import SchedulerLease

    with session_scope(factory, write=True) as db:
        lease = db.get(SchedulerLease, "scheduler")
        if lease is not None:
            db.delete(lease)
    assert api.get("/api/v1/scheduler").json()["leader"] is None
    with session_scope(factory, write=True) as db:
        db.add(
            SchedulerLease(name="scheduler", holder="host-a:123", expires_at=utcnow() + timedelta(seconds=30))
        )
    try:
        state = api.get("/api/v1/scheduler").json()
        assert state["leader"] == "host-a:123" and isinstance(state["jobs"], list)
    finally:
        with session_scope(factory, write=True) as db:
            db.delete(db.get(SchedulerLease, "scheduler"))
