"""The `exchange` command as an administrator runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from taxii2client.v21 import Server

from tests.conftest import free_port

EXE = str(Path(sys.executable).with_name("exchange"))


def run(env, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def, type-arg]
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_init_is_idempotent_and_prints_the_admin_key_once(env, settings):
    first = run(env, "init", "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    second = json.loads(run(env, "init", "--json").stdout)
    if settings.database_url is None:
        assert created["id"] and created["key"]
        assert second == {"id": created["id"], "key": None}
    else:  # the shared PostgreSQL test database already has an admin
        assert second["key"] is None and second["id"]
    listed = json.loads(run(env, "collection", "list", "--json").stdout)
    assert {"indicators", "incidents", "partner-submissions"} <= {c["alias"] for c in listed}


def test_user_add_and_collection_add(env):
    user = run(env, "user", "add", "alice", "--role", "analyst", "--json")
    assert user.returncode == 0, user.stderr
    assert set(json.loads(user.stdout)) == {"id", "key"}
    alias = f"cli-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    added = json.loads(run(env, "collection", "add", alias, "--title", "CLI", "--json").stdout)
    assert added["alias"] == alias
    again = run(env, "collection", "add", alias)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run(env, "collection", "add", "Bad Alias")
    assert bad.returncode == 1 and "alias" in bad.stderr
    bad_role = run(env, "user", "add", "bob", "--role", "root")
    assert bad_role.returncode == 2


def test_production_mode_refuses_a_missing_secret(env):
    result = run({**env, "EXCHANGE_ENVIRONMENT": "production"}, "init")
    assert result.returncode == 2 and "EXCHANGE_SECRET_KEY" in result.stderr


@pytest.mark.live
def test_demo_then_serve_answers_taxii_clients(env):
    demo = run(env, "demo", "--json")
    assert demo.returncode == 0, demo.stderr
    data = json.loads(demo.stdout)
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        analyst = data["analyst"]
        server = Server(f"{base}/taxii2/", user=analyst["id"], password=analyst["key"])
        root = server.default
        indicators = next(c for c in root.collections if c.alias == "indicators")
        objects = indicators.get_objects()["objects"]
        assert any(o["type"] == "indicator" for o in objects)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/taxii2/" in out
    assert analyst["key"] not in out  # secrets never in logs
