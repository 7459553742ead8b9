"""A PostgreSQL cluster of a test's (or a fault benchmark's) own (pg_createcluster on a free port), for tests that restart
or stop the server: never the shared one at 5432."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"cluster {self.name} not listening on {self.port} after {timeout} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version() -> str | None:
    base = "/usr/lib/postgresql"
    if not os.path.isdir(base):
        return None
    versions = sorted((v for v in os.listdir(base) if v.isdigit()), key=int)
    return versions[-1] if versions else None


@contextmanager
def own_cluster(prefix: str = "test") -> Iterator[Cluster]:
    """A started cluster (trust auth, listening on localhost), stopped and dropped afterwards.

    Raises ClusterUnavailable where none can be made (tests skip on it, with its reason).
    """
    version = _version()
    if version is None or shutil.which("pg_createcluster") is None:
        raise ClusterUnavailable("pg_createcluster (postgresql-common) is not installed")
    if os.geteuid() != 0 and os.environ.get("USER") != "postgres":
        raise ClusterUnavailable("pg_createcluster needs root or the postgres user")
    cluster = Cluster(version, f"{prefix}{uuid.uuid4().hex[:8]}", _free_port())
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
