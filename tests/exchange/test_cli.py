"""The `exchange` command as an administrator runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import httpx
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url
from taxii2client.v21 import Server

from exchange.config import Settings
from exchange.database import revision
from exchange.database.core import make_engine
from exchange.database.migrate import upgrade
from tests.support.cli import EXE, environment, run, run_process
from tests.support.taxii import free_port


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
    assert run(env, "init").returncode == 0
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
    without = {k: v for k, v in env.items() if k != "EXCHANGE_SECRET_KEY"}
    result = run_process({**without, "EXCHANGE_ENVIRONMENT": "production"}, "init")
    assert result.returncode == 2 and "EXCHANGE_SECRET_KEY" in result.stderr


@pytest.mark.live
def test_demo_then_serve_answers_taxii_clients(env):
    demo = run_process(env, "demo", "--json")
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


# --- which exchange a command works on ---------------------------------------------------------

READ_AND_WRITE_COMMANDS = [
    ("partner", "list"),
    ("partner", "add", "cert-in", "--name", "CERT-In", "--country", "IN"),
    ("user", "add", "alice", "--role", "analyst"),
    ("collection", "list"),
    ("feed", "list"),
    ("audit", "verify"),
    ("agreement", "export"),
    ("credential", "revoke", "cred-0123456789abcdef"),
    ("push", "status", "cert-in"),
    ("signing-key", "jwks"),
    ("export", "indicators", "--partner", "cert-in", "-o", "/nonexistent/out.json"),
    ("verify", "bundle.json"),
]


@pytest.mark.parametrize("args", READ_AND_WRITE_COMMANDS, ids=" ".join)
def test_a_command_refuses_to_start_a_new_exchange_where_there_is_none(tmp_path, args):
    missing = tmp_path / "elsewhere" / "data"
    result = run(environment(missing), *args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    message = result.stderr
    assert str(missing) in message and "from EXCHANGE_DATA_DIR" in message
    for way in ("--data-dir DIR", "EXCHANGE_DATA_DIR=DIR", "exchange-data/", "exchange init"):
        assert way in message, (way, message)
    assert not missing.exists() and not (tmp_path / "elsewhere").exists()


def test_the_default_data_dir_is_exchange_data_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in environment(tmp_path).items() if k != "EXCHANGE_DATA_DIR"}
    refused = run(env, "partner", "list")
    assert refused.returncode == 2
    assert f"no exchange at {tmp_path / 'exchange-data'} (the default ./exchange-data" in refused.stderr
    assert str(tmp_path) in refused.stderr
    assert run(env, "init").returncode == 0
    assert (tmp_path / "exchange-data" / "exchange.db").is_file()
    assert run(env, "partner", "list").returncode == 0


def test_an_existing_data_dir_without_a_database_is_refused_too(tmp_path):
    (tmp_path / "data").mkdir()
    result = run(environment(tmp_path / "data"), "partner", "add", "p1", "--name", "P", "--country", "IN")
    assert result.returncode == 2
    assert f"{tmp_path / 'data'}" in result.stderr and "has no database (exchange.db)" in result.stderr
    assert list((tmp_path / "data").iterdir()) == []


def test_a_data_dir_that_is_a_file_is_named_as_such(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    env = environment(tmp_path / "data")
    listed = run(env, "partner", "list")
    assert listed.returncode == 2 and f"no exchange at {tmp_path / 'data'}" in listed.stderr
    assert "that is not a directory" in listed.stderr
    made = run(env, "init")
    assert made.returncode == 2
    assert f"cannot create the data directory {tmp_path / 'data'} (from EXCHANGE_DATA_DIR)" in made.stderr


def test_data_dir_flag_before_or_after_the_command(tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    env = environment(other)  # EXCHANGE_DATA_DIR points elsewhere; the flag wins
    assert run(env, "--data-dir", str(mine), "init").returncode == 0
    assert (mine / "exchange.db").is_file() and not other.exists()
    added = run(
        env, "partner", "add", "cert-in", "--name", "CERT-In", "--country", "IN", "--data-dir", str(mine)
    )
    assert added.returncode == 0, added.stderr
    listed = run(env, "--data-dir", str(mine), "partner", "list", "--json")
    assert [p["slug"] for p in json.loads(listed.stdout)] == ["cert-in"]
    refused = run(env, "partner", "list")
    assert refused.returncode == 2 and f"no exchange at {other} (from EXCHANGE_DATA_DIR)" in refused.stderr
    flagged = run(env, "--data-dir", str(tmp_path / "typo"), "partner", "list")
    assert flagged.returncode == 2 and f"{tmp_path / 'typo'} (from --data-dir)" in flagged.stderr
    assert run(env, "--data-dir", "", "partner", "list").returncode == 2  # argparse: give a directory


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_database_without_the_schema_or_behind_it_says_run_init(tmp_path, empty_database):
    # The data dir does not exist: with EXCHANGE_DATABASE_URL the database is what matters.
    env = environment(tmp_path / "no-data-dir", empty_database)
    sqlite = empty_database.startswith("sqlite")
    shown = tmp_path / "empty.db" if sqlite else make_url(empty_database).render_as_string(hide_password=True)

    bare = run(env, "partner", "list")
    assert bare.returncode == 2, bare
    assert f"the database {shown} has no exchange schema: run `exchange init`" in bare.stderr
    assert _tables(empty_database) == set()  # checked, not migrated

    engine = make_engine(empty_database)
    try:
        upgrade(engine, "0003")
    finally:
        engine.dispose()
    tables = _tables(empty_database)
    behind = run(env, "partner", "add", "cert-in", "--name", "CERT-In", "--country", "IN")
    (head,) = revision.heads()
    assert behind.returncode == 2 and behind.stdout == ""
    assert f"is at schema revision 0003, this exchange needs {head}: run `exchange init`" in behind.stderr
    assert _tables(empty_database) == tables

    assert run(env, "init").returncode == 0
    added = run(env, "partner", "add", "cert-in", "--name", "CERT-In", "--country", "IN")
    assert added.returncode == 0, added.stderr


def test_a_database_newer_than_the_code_is_named_as_such(tmp_path):
    env = environment(tmp_path / "data")
    assert run(env, "init").returncode == 0
    with closing(sqlite3.connect(tmp_path / "data" / "exchange.db")) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    result = run(env, "audit", "verify")
    assert result.returncode == 2
    assert "revision 9999, which this version of the exchange does not know" in result.stderr


def test_an_unreachable_database_is_named_without_its_password(tmp_path):
    url = f"postgresql+psycopg://exchange:s3cr3t-pw@127.0.0.1:{free_port()}/exchange"
    result = run(environment(tmp_path / "data", url), "partner", "list")
    assert result.returncode == 2
    assert "cannot open the database postgresql+psycopg://exchange:***@127.0.0.1" in result.stderr
    assert "s3cr3t-pw" not in result.stderr


def test_the_schema_heads_are_read_the_way_alembic_reads_them():
    from alembic.script import ScriptDirectory

    from exchange.database.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    assert revision.heads() == set(scripts.get_heads())
    assert revision.known() == {s.revision for s in scripts.walk_revisions()}


def test_settings_only_read(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.sqlalchemy_url.endswith("exchange.db")
    with pytest.raises(ValueError, match="EXCHANGE_SECRET_KEY"):
        settings.resolved_secret()
    assert not (tmp_path / "data").exists()
    settings.ensure_secret()  # what create_app and `exchange serve` do
    assert len(settings.resolved_secret()) >= 48
    assert oct((tmp_path / "data" / "secret.key").stat().st_mode & 0o777) == "0o600"


def test_scheduler_migrates_an_existing_exchange_but_never_makes_one(tmp_path):
    # Its own process: a scheduler that did start would run until stopped.
    refused = run_process(environment(tmp_path / "data"), "scheduler", timeout=60)
    assert refused.returncode == 2 and f"no exchange at {tmp_path / 'data'}" in refused.stderr
    assert not (tmp_path / "data").exists()


def test_the_console_script_and_python_m(tmp_path):
    env = environment(tmp_path / "data")
    shown = run_process(env, "--help")
    assert shown.returncode == 0 and "--data-dir DIR" in shown.stdout and "partner" in shown.stdout
    module = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "partner", "list"], env=env, capture_output=True, text=True
    )
    assert module.returncode == 2 and "exchange init" in module.stderr


_IMPORTED = """
import contextlib, io, json, sys
from exchange.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in sys.modules if "." not in m)))
"""


def test_help_loads_no_heavy_module_and_a_read_command_does_not_migrate(tmp_path):
    # Not a timing: which modules a command loads decides what it costs, on any machine.
    env = environment(tmp_path / "data")
    assert run(env, "init").returncode == 0

    def loaded(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTED, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return set(json.loads(done.stdout.splitlines()[-1]))

    heavy = {"sqlalchemy", "pydantic", "pydantic_settings", "alembic", "fastapi", "uvicorn", "medallion"}
    heavy |= {"stix2", "misp_stix", "flask", "yaml", "cryptography", "requests", "apscheduler"}
    assert loaded("--help") & heavy == set()
    assert loaded("partner", "--help") & heavy == set()
    listing = loaded("partner", "list")
    assert {"sqlalchemy", "pydantic_settings"} <= listing
    assert listing & {"alembic", "fastapi", "uvicorn", "medallion", "stix2", "misp_stix", "flask"} == set()


def test_init_keeps_the_secret_later_commands_need(tmp_path):
    """Cursors and deterministic ids are keyed with the secret: `init` makes it, once, owner-only."""
    env = environment(tmp_path / "data")
    env.pop("EXCHANGE_SECRET_KEY", None)
    assert run(env, "init").returncode == 0
    secret = tmp_path / "data" / "secret.key"
    first = secret.read_text()
    assert len(first.strip()) >= 32 and secret.stat().st_mode & 0o077 == 0
    assert run(env, "init").returncode == 0
    assert secret.read_text() == first
