"""Throw-away PostgreSQL clusters of our own (Debian's pg_createcluster) on free ports, dropped
afterwards: one to stop and restart under load (`own_cluster`), or a primary and a streaming
replica made from it with pg_basebackup -R (`streaming_pair`).

The machine's main cluster is left alone: changing its replication settings would need a
restart under everyone else's tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.taxii import free_port

# Fast and small: nothing here must survive a crash of the machine.
SETTINGS = """
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 60
wal_level = replica
max_wal_senders = 4
hot_standby = on
wal_receiver_status_interval = 1s
"""


def _version() -> str | None:
    etc = Path("/etc/postgresql")
    if shutil.which("pg_createcluster") is None or not etc.is_dir():
        return None
    versions = sorted((p.name for p in etc.iterdir() if p.name.replace(".", "").isdigit()), key=float)
    return versions[-1] if versions else None


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass(frozen=True)
class Pair:
    version: str
    primary: str  # cluster names
    replica: str
    primary_port: int
    replica_port: int

    def url(self, port: int, database: str = "exchange") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self.url(self.replica_port)

    def stop_replica(self) -> None:
        _run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.replica, "stop", "-m", "fast")

    def start_replica(self) -> None:
        _run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.replica, "start")
        _wait_ready(self.replica_port)

    def replica_sql(self, statement: str) -> object:
        engine = create_engine(self.url(self.replica_port, "postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                return conn.execute(text(statement)).scalar()
        finally:
            engine.dispose()

    def pause_replay(self) -> None:
        self.replica_sql("SELECT pg_wal_replay_pause()")

    def resume_and_catch_up(self, timeout: float = 30.0) -> None:
        """Resume replay and wait until the replica has replayed everything the primary wrote."""
        self.replica_sql("SELECT pg_wal_replay_resume()")
        engine = create_engine(self.url(self.primary_port, "postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                # The insert position, not the write one: with synchronous_commit off a commit's
                # record may be inserted but not yet written when this asks.
                target = conn.execute(text("SELECT pg_current_wal_insert_lsn()")).scalar()
        finally:
            engine.dispose()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.replica_sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"):
                return
            time.sleep(0.05)
        raise RuntimeError("the replica did not catch up")


def _create(version: str, name: str, port: int, data: Path | None = None) -> None:
    where = ["-d", str(data)] if data else []
    _run(
        "pg_createcluster",
        "-p",
        str(port),
        "--start-conf",
        "manual",
        *where,
        version,
        name,
        "--",
        "--auth=trust",
    )
    if data is None:  # Debian's postgresql.conf includes conf.d/ (the port stays in postgresql.conf)
        Path(f"/etc/postgresql/{version}/{name}/conf.d/exchange-test.conf").write_text(SETTINGS)


def _wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on port {port} did not start")
        time.sleep(0.1)


@contextmanager
def streaming_pair() -> Iterator[Pair]:
    """A primary with a database `exchange` and a hot-standby replica streaming from it."""
    version = _version()
    if version is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the replica tests: Debian's postgresql-common is missing")
        pytest.skip("no pg_createcluster (Debian postgresql-common) on this machine")
    if os.geteuid() != 0:
        pytest.skip("making PostgreSQL clusters needs root (pg_createcluster, runuser)")
    tag = uuid.uuid4().hex[:8]
    pair = Pair(version, f"xprimary{tag}", f"xreplica{tag}", free_port(), free_port())
    made: list[str] = []
    try:
        _create(version, pair.primary, pair.primary_port)
        made.append(pair.primary)
        _run("pg_ctlcluster", "--skip-systemctl-redirect", version, pair.primary, "start")
        _wait_ready(pair.primary_port)
        _run(
            "runuser", "-u", "postgres", "--", "psql", "-q", "-h", "127.0.0.1",
            "-p", str(pair.primary_port), "-c", "CREATE DATABASE exchange", "postgres",
        )  # fmt: skip
        # The base backup first, then pg_createcluster adopts that directory (no second initdb).
        data = Path(f"/var/lib/postgresql/{version}/{pair.replica}")
        data.mkdir(mode=0o700)
        shutil.chown(data, "postgres", "postgres")
        made.append(pair.replica)
        _run(
            "runuser", "-u", "postgres", "--", "pg_basebackup", "-h", "127.0.0.1",
            "-p", str(pair.primary_port), "-U", "postgres", "-D", str(data), "-R", "-X", "stream",
            "-c", "fast",
        )  # fmt: skip
        # What pg_createcluster adopts into /etc (Debian keeps these outside the data directory).
        (data / "postgresql.conf").write_text(SETTINGS)
        for conf in ("pg_hba.conf", "pg_ident.conf"):
            shutil.copy(f"/etc/postgresql/{version}/{pair.primary}/{conf}", data / conf)
        for entry in data.glob("*.conf"):
            shutil.chown(entry, "postgres", "postgres")
        _create(version, pair.replica, pair.replica_port, data)
        _run("pg_ctlcluster", "--skip-systemctl-redirect", version, pair.replica, "start")
        _wait_ready(pair.replica_port)
        yield pair
    finally:
        for name in reversed(made):
            # Nothing in them is kept: stop at once, then drop (a data directory never adopted
            # by pg_createcluster is removed by hand).
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "immediate"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            subprocess.run(
                ["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=60, check=False
            )
            for left in (f"/var/lib/postgresql/{version}/{name}", f"/etc/postgresql/{version}/{name}"):
                shutil.rmtree(left, ignore_errors=True)


class ClusterUnavailable(RuntimeError):
    """This machine cannot make a cluster (no postgresql-common, or not root/postgres)."""


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str, *extra: str) -> None:
        """`pg_ctlcluster <version> <name> <action>` (start, stop, restart), waiting for it."""
        done = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode:
            raise AssertionError(f"pg_ctlcluster {action} failed: {done.stderr.strip()[-500:]}")

    def wait_ready(self, timeout: float = 30) -> None:
        _wait_ready(self.port, timeout)


@contextmanager
def own_cluster(prefix: str = "test") -> Iterator[Cluster]:
    """A started cluster (trust auth, listening on localhost), stopped and dropped afterwards.

    Raises ClusterUnavailable where none can be made (tests skip on it, with its reason).
    """
    version = _version()
    if version is None:
        raise ClusterUnavailable("pg_createcluster (postgresql-common) is not installed")
    if os.geteuid() != 0 and os.environ.get("USER") != "postgres":
        raise ClusterUnavailable("pg_createcluster needs root or the postgres user")
    cluster = Cluster(version, f"{prefix}{uuid.uuid4().hex[:8]}", free_port())
    subprocess.run(
        [
            "pg_createcluster",
            version,
            cluster.name,
            "--port",
            str(cluster.port),
            "-o",
            "fsync=off",
            "-o",
            "max_connections=200",
            "--",
            "--auth=trust",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        cluster.ctl("start")
        cluster.wait_ready()
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, cluster.name], capture_output=True, timeout=120, check=False
        )
