"""Two real exchanges on loopback, `bd` and `in`, each the other's partner and peer.

Each runs as `exchange serve` in its own process with its own data directory, identity and
SQLite database; each is reached by the other through a TLS proxy (tests/peer/proxy.py) that
can tamper with or replay a page. Everything is set up with the `exchange` command itself.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, text

from tests.peer.proxy import Proxy
from tests.support.certs import ca_pem, make_ca
from tests.support.cli import EXE, Result, environment, run
from tests.support.taxii import every_version, free_port

TAXII = "application/taxii+json;version=2.1"
STAMP = "2026-01-01T00:00:00.000Z"


@dataclass
class Exchange:
    name: str  # bd | in
    slug: str  # how the other side knows it: cert-bd | cert-in
    data_dir: Path
    identity: str
    env: dict[str, str]
    port: int = 0
    admin: tuple[str, str] = ("", "")
    process: subprocess.Popen | None = None  # type: ignore[type-arg]
    proxy: Proxy | None = None  # TLS, what the other side pulls it through
    inbox: Proxy | None = None  # plain HTTP, what the other side pushes to it through
    feeds: list[str] = field(default_factory=list)  # its feeds pulling the other side
    peer_key: str = ""  # its key at the other side

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, **extra_env: str) -> Result:
        return run({**self.env, **extra_env}, *args)

    def ok(self, *args: str, **extra_env: str) -> Result:
        result = self.cli(*args, **extra_env)
        assert result.returncode == 0, (
            f"{self.name}: exchange {' '.join(args)}\n{result.stdout}{result.stderr}"
        )
        return result

    def publish(self, count: int, collection: str = "indicators") -> list[dict[str, Any]]:
        """`count` fresh indicators POSTed over TAXII by this exchange's administrator."""
        return self.post([indicator() for _ in range(count)], collection)

    def post(self, objects: list[dict[str, Any]], collection: str = "indicators") -> list[dict[str, Any]]:
        """`objects` POSTed over TAXII by this exchange's administrator (its analysts' channel)."""
        count = len(objects)
        answer = httpx.post(
            f"{self.url}/taxii2/root/collections/{collection}/objects/",
            json={"objects": objects},
            auth=self.admin,
            headers={"Accept": TAXII, "Content-Type": TAXII},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["success_count"] == count, answer.text
        return objects

    def objects(self, collection: str) -> list[dict[str, Any]]:
        """Every stored version in a collection, as the administrator reads it."""
        url = f"{self.url}/taxii2/root/collections/{collection}/objects/"
        return every_version(httpx.get, url, self.admin, limit=1000)

    def pull(self) -> dict[str, Any]:
        """Run every feed pulling the other exchange; their summaries added up."""
        total: dict[str, Any] = {"status": "ok", "error": None}
        for name in self.feeds:
            result = self.cli("feed", "run", name, "--json")
            summary = json.loads(result.stdout.strip().splitlines()[-1])
            for key in ("fetched", "new", "updated", "unchanged", "dropped", "failed"):
                total[key] = total.get(key, 0) + summary[key]
            if summary["status"] == "failed":
                total["status"] = "failed"
                total["error"] = "; ".join(filter(None, [total["error"], summary["error"]]))
        return total

    def agree(self, partner: str, tmp: Path, **changes: Any) -> None:
        """Apply `partner`'s agreement here again with `changes` to its write section (or `push`)."""
        doc = _agreement(partner)
        push = changes.pop("push", None)
        doc["write"].update(changes)
        if push is not None:
            doc["push"] = push
        path = tmp / f"{self.name}-{partner}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(doc))
        self.ok("agreement", "apply", str(path))

    def push_to(self, there: Exchange, tmp: Path, **changes: Any) -> None:
        """Push to `there`'s partner-submissions (through its recording inbox), every hour."""
        assert there.inbox is not None
        url = f"{there.inbox.url}/taxii2/root/collections/partner-submissions/"
        self.agree(there.slug, tmp, push={"url": url, "every": "1h"}, **changes)
        self.ok(
            "partner",
            "push-auth",
            there.slug,
            "--username",
            self.env["PEER_USER"],
            "--password-env",
            "PEER_KEY",
        )

    def cursor(self) -> dict[str, Any]:
        engine = create_engine(f"sqlite:///{self.data_dir / 'exchange.db'}")
        try:
            with engine.connect() as conn:
                value = conn.execute(
                    text("SELECT cursor FROM feed WHERE name = :n"), {"n": self.feeds[0]}
                ).scalar()
        finally:
            engine.dispose()
        return dict(json.loads(value or "{}"))

    def stop(self) -> None:
        for proxy in (self.proxy, self.inbox):
            if proxy is not None:
                proxy.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def indicator() -> dict[str, Any]:
    n = uuid.uuid4()
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{n}",
        "created": STAMP,
        "modified": STAMP,
        "name": f"C2 {n.hex[:6]}",
        "pattern_type": "stix",
        "pattern": f"[ipv4-addr:value = '198.51.{n.int % 250}.{n.int // 256 % 250}']",
        "valid_from": STAMP,
        "confidence": 80,
    }


def _agreement(partner: str) -> dict[str, Any]:
    return {
        "partner": partner,
        "title": f"peering with {partner}",
        "status": "active",
        "valid_from": "2025-01-01",
        "valid_until": "2035-01-01",
        "read": {"collections": ["indicators", "partner-submissions"], "max_tlp": "amber"},
        "write": {"collections": ["partner-submissions"], "types": ["indicator", "sighting", "identity"]},
    }


def _spawn(side: Exchange) -> None:
    side.port = free_port()
    side.process = subprocess.Popen(
        [EXE, "serve", "--port", str(side.port), "--no-scheduler"],
        env=side.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(side: Exchange) -> None:
    assert side.process is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{side.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if side.process.poll() is not None:
            raise RuntimeError(f"exchange {side.name} stopped while starting")
        time.sleep(0.1)
    raise RuntimeError(f"exchange {side.name} did not start")


def start_pair(tmp: Path) -> tuple[Exchange, Exchange]:
    """`bd` and `in`, serving, each the other's partner (with an agreement) and peer."""
    ca = make_ca()
    ca_file = tmp / "ca.pem"
    ca_file.write_text(ca_pem(ca))
    sides = []
    for name in ("bd", "in"):
        data_dir = tmp / name
        identity = f"identity--{uuid.uuid4()}"
        env = environment(
            data_dir,
            EXCHANGE_IDENTITY_ID=identity,
            EXCHANGE_IDENTITY_NAME=f"CERT-{name.upper()}",
            EXCHANGE_SECRET_KEY=f"{name}-secret-" + "s" * 40,
            EXCHANGE_SCHEDULER_ENABLED="false",
            EXCHANGE_PEER_KEYS_REFETCH_SECONDS="0",
            EXCHANGE_MAX_PAGE_SIZE="2",  # every pull reads several signed pages
        )
        side = Exchange(name=name, slug=f"cert-{name}", data_dir=data_dir, identity=identity, env=env)
        init = side.ok("init", "--json")
        admin = json.loads(init.stdout.strip().splitlines()[-1])
        side.admin = (admin["id"], admin["key"])
        sides.append(side)
    bd, in_ = sides
    try:
        for side in sides:  # both start at once: starting is most of the module's time
            _spawn(side)
        for side in sides:
            _wait(side)
            side.proxy = Proxy(side.port, tmp, ca)
            side.inbox = Proxy(side.port, tmp, None)
        for here, there in ((bd, in_), (in_, bd)):
            # `there` registers `here` as its partner: the credential `here` pulls with.
            added = json.loads(
                there.ok(
                    "partner",
                    "add",
                    here.slug,
                    "--name",
                    f"CERT {here.name}",
                    "--country",
                    here.name.upper(),
                    "--identity",
                    here.identity,
                    "--json",
                ).stdout
            )
            here.peer_key = added["key"]
            doc = tmp / f"{there.name}-agreement-{here.slug}.yaml"
            doc.write_text(yaml.safe_dump(_agreement(here.slug)))
            there.ok("agreement", "apply", str(doc))
            here.env["PEER_KEY"] = added["key"]
            here.env["PEER_USER"] = added["credential_id"]
        for here, there in ((bd, in_), (in_, bd)):
            assert there.proxy is not None
            # bd names in's collection; in gives bd's API root: every collection it may read there.
            url = "/taxii2/root/collections/indicators/" if here is bd else "/taxii2/root/"
            peered = here.ok(
                "peer", "add", there.slug,
                "--url", there.proxy.url + url,
                "--jwks-url", f"{there.proxy.url}/.well-known/jwks.json",
                "--ca-file", str(ca_file),
                "--our-name", here.slug,
                "--username", here.env["PEER_USER"],
                "--password-env", "PEER_KEY",
                "--json",
            )  # fmt: skip
            here.feeds = json.loads(peered.stdout)["feeds"]
    except BaseException:
        for side in sides:
            side.stop()
        raise
    return bd, in_
