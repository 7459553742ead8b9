"""A feed's secrets (query-string keys, auth headers, passwords) are shown nowhere and sent
only to the feed's own origin."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from feeds.runner import run_feed
from tests.support.feeds import FeedHttpServer

EXE = str(Path(sys.executable).with_name("exchange"))
QUERY_KEY = "q5ecret" + uuid.uuid4().hex
HEADER_KEY = "h5ecret" + uuid.uuid4().hex
PASSWORD = "p5ecret" + uuid.uuid4().hex
LIST = b"198.51.100.61\n198.51.100.62\n"


@pytest.fixture
def api(live_server, admin):  # type: ignore[no-untyped-def]
    with httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {admin[1]}"}, timeout=60
    ) as client:
        yield client


def _no_secret(text: str) -> None:
    for secret in (QUERY_KEY, HEADER_KEY, PASSWORD):
        assert secret not in text, "a feed secret was shown"


def test_rest_never_shows_a_query_string_key_or_an_auth_header(api, feed_server, coll) -> None:
    url = feed_server.serve("/keyed.txt", LIST) + f"?apikey={QUERY_KEY}&type=ip"
    name = f"keyed-{uuid.uuid4().hex[:8]}"
    body = {
        "name": name,
        "kind": "text",
        "url": url,
        "collection": coll.alias,
        "auth": {"headers": {"X-Api-Key": HEADER_KEY}},
    }
    created = api.post("/feeds", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["url"].endswith("?apikey=***&type=***")
    for shown in (created, api.get("/feeds"), api.get(f"/feeds/{name}")):
        _no_secret(shown.text)

    # The masked URL sent back unchanged keeps the real key; the feed still authenticates.
    patched = api.patch(f"/feeds/{name}", json={"url": created.json()["url"], "tlp": "green"})
    assert patched.status_code == 200, patched.text
    _no_secret(patched.text)
    assert api.post(f"/feeds/{name}/run").status_code == 202
    seen = feed_server.routes["/keyed.txt"]
    for _ in range(600):
        if seen.requests:
            break
        import time

        time.sleep(0.05)
    assert seen.seen_headers[0]["X-Api-Key"] == HEADER_KEY

    # A refused request must not echo the credentials it carried.
    for bad in (
        {k: v for k, v in body.items() if k != "name"},  # a missing field: pydantic echoes the whole body
        body | {"auth": {"headers": {"X-Api-Key": HEADER_KEY}, "password": PASSWORD, "junk": 1}},
        body | {"auth": {"headers": {"X-Api-Key": [HEADER_KEY]}}},
        body | {"auth": {"username": "u", "password": [PASSWORD]}},
    ):
        refused = api.post("/feeds", json=bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"], refused.text
        _no_secret(refused.text)
    refused = api.patch(f"/feeds/{name}", json={"auth": {"headers": {"X-Api-Key": [HEADER_KEY]}}})
    assert refused.status_code == 422
    _no_secret(refused.text)


def test_cli_never_shows_a_query_string_key(env, feed_server) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    assert run("init").returncode == 0
    url = feed_server.serve("/cli-keyed.txt", LIST) + f"?type=ip&api_key={QUERY_KEY}"
    name = f"cli-{uuid.uuid4().hex[:8]}"
    env["FEED_HEADER"] = HEADER_KEY
    for json_flag in ((), ("--json",)):
        added = run(
            "feed",
            "add",
            name + "".join(json_flag).replace("--", "-"),
            "--kind",
            "text",
            "--url",
            url,
            "--collection",
            "indicators",
            "--header-env",
            "X-Api-Key=FEED_HEADER",
            *json_flag,
        )
        assert added.returncode == 0, added.stderr
        _no_secret(added.stdout + added.stderr)
    assert "api_key=***" in json.loads(added.stdout)["url"]
    for listing in (run("feed", "list"), run("feed", "list", "--json"), run("feed", "runs", name)):
        _no_secret(listing.stdout + listing.stderr)


def test_a_redirect_to_another_origin_gets_no_credentials(feed_server, feeds, factory, feed_settings) -> None:
    other = FeedHttpServer()  # another port on 127.0.0.1: another origin
    try:
        target = other.serve("/moved.txt", LIST)
        feed_server.serve("/here.txt", LIST)
        start = feed_server.serve("/start.txt", redirect=target)
        auth = {"username": "reader", "password": PASSWORD, "headers": {"X-Api-Key": HEADER_KEY}}
        name, _ = feeds.add("text", start, auth=auth)
        summary = run_feed(factory, feed_settings, name)
        assert summary.status == "ok", summary.line()
        assert summary.counts["new"] == 2
        sent = {k.lower(): v for k, v in other.routes["/moved.txt"].seen_headers[0].items()}
        assert "x-api-key" not in sent and "authorization" not in sent, sent
        assert HEADER_KEY not in json.dumps(sent)
        note = feeds.runs(name)[0].failures[0]["message"]
        assert "another origin" in note and "were not sent" in note, note
        assert "X-Api-Key" in note and "Authorization" in note
        _no_secret(note)

        # Within the feed's own origin, credentials follow the redirect.
        same = feed_server.serve("/same.txt", redirect=feed_server.base + "/here.txt")
        name, _ = feeds.add("text", same, auth=auth)
        assert run_feed(factory, feed_settings, name).status == "ok"
        sent = feed_server.routes["/here.txt"].seen_headers[0]
        assert sent["X-Api-Key"] == HEADER_KEY and sent["Authorization"].startswith("Basic ")
        assert feeds.runs(name)[0].failures == []
    finally:
        other.close()


def test_every_query_value_is_masked_in_every_view(live_server, api, feed_server, coll, caplog) -> None:  # type: ignore[no-untyped-def]
    # Whatever the parameter is called: pwd, pw and p carry keys as well as apiKey does.
    values = {name: f"v5ecret{name}{uuid.uuid4().hex}" for name in ("user", "pwd", "pw", "p", "apiKey")}
    query = "&".join(f"{name}={value}" for name, value in values.items()) + "&" + "b5ecret" + uuid.uuid4().hex
    url = feed_server.serve("/masked.txt", LIST, status=403) + "?" + query
    name = f"masked-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.INFO):
        created = api.post(
            "/feeds", json={"name": name, "kind": "text", "url": url, "collection": coll.alias}
        )
        assert created.status_code == 201, created.text
        assert created.json()["url"].endswith("?user=***&pwd=***&pw=***&p=***&apiKey=***&***")
        assert api.post(f"/feeds/{name}/run").status_code == 202
        for _ in range(600):
            last = api.get(f"/feeds/{name}").json()["last_run"]
            if last and last["status"] != "running":
                break
            time.sleep(0.05)
        assert last["status"] == "failed" and "403" in last["error"], last
    # The real URL is what was fetched.
    assert feed_server.routes["/masked.txt"].seen_paths == ["/masked.txt?" + query]

    with httpx.Client(base_url=live_server.url, timeout=60) as browser:
        _, key = live_server.credential("analyst")
        assert browser.post("/ui/login", data={"key": key, "next": "/ui/"}).status_code == 303
        pages = [browser.get(path) for path in ("/ui/", "/ui/feeds", f"/ui/feeds/{name}")]
    assert all(page.status_code == 200 for page in pages) and name in pages[2].text
    shown = [
        created.text,
        api.get("/feeds").text,
        api.get(f"/feeds/{name}").text,
        api.get(f"/feeds/{name}/runs").text,
        api.get("/audit", params={"limit": 1000}).text,
        *(page.text for page in pages),
        caplog.text,
    ]
    assert f"feed {name}: failed" in caplog.text
    for text in shown:
        for secret in [*values.values(), query.rpartition("&")[2]]:
            assert secret not in text, "a query value was shown"
