"""A medallion 3.0.0 TAXII server in its own process on 127.0.0.1, for feed and push tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.taxii import every_version, free_port

API_ROOT = "api1"
TAXII = "application/taxii+json;version=2.1"


@dataclass
class Medallion:
    url: str
    process: subprocess.Popen  # type: ignore[type-arg]
    record_dir: Path
    users: dict[str, str]
    collections: dict[str, str] = field(default_factory=dict)  # title -> id
    config_path: Path | None = None
    port: int = 0

    def collection_url(self, title: str) -> str:
        return f"{self.url}/{API_ROOT}/collections/{self.collections[title]}/"

    def objects(self, title: str, user: str | None = None) -> list[dict[str, Any]]:
        """Every object version in a collection (paged through medallion's own `next`)."""
        user = user or next(iter(self.users))
        return every_version(
            requests.get, self.collection_url(title) + "objects/", (user, self.users[user]), limit=100
        )

    def add(self, title: str, objects: list[dict[str, Any]], user: str | None = None) -> None:
        user = user or next(iter(self.users))
        answer = requests.post(
            self.collection_url(title) + "objects/",
            json={"objects": objects},
            auth=(user, self.users[user]),
            headers={"Accept": TAXII, "Content-Type": TAXII},
            timeout=60,
        )
        answer.raise_for_status()

    def posts(self) -> list[bytes]:
        """Raw bodies of every POST the server received, oldest first."""
        return [p.read_bytes() for p in sorted(self.record_dir.glob("post-*.json"))]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start_again(self) -> None:
        """Restart on the same port with the same (initial) data."""
        self.stop()
        self.process = _spawn(self.config_path, self.port, self.record_dir)  # type: ignore[arg-type]


def _spawn(config: Path, port: int, record_dir: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    script = Path(__file__).with_name("medallion_peer.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(config), str(port), str(record_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError("medallion did not start")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/taxii2/", timeout=2)
            return process
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("medallion did not answer")


def start_medallion(
    tmp: Path,
    *,
    collections: dict[str, list[dict[str, Any]]] | None = None,
    users: dict[str, str] | None = None,
    max_page_size: int = 100,
) -> Medallion:
    """medallion with one API root holding `collections` (title -> initial objects)."""
    users = users or {"feeder": "feeder-secret"}
    collections = collections if collections is not None else {"intel": []}
    port = free_port()
    ids = {title: str(uuid.uuid4()) for title in collections}
    stamp = "2026-01-01T00:00:00.000000Z"
    data: dict[str, Any] = {
        "/discovery": {
            "title": "peer",
            "default": f"http://127.0.0.1:{port}/{API_ROOT}/",
            "api_roots": [f"http://127.0.0.1:{port}/{API_ROOT}/"],
        },
        API_ROOT: {
            "information": {
                "title": "peer root",
                "versions": [TAXII],
                "max_content_length": 50 * 1024 * 1024,
            },
            "status": [],
            "collections": [
                {
                    "id": ids[title],
                    "title": title,
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": list(objs),
                    "manifest": [
                        {
                            "id": o["id"],
                            "date_added": stamp,
                            "version": o.get("modified") or o.get("created") or stamp,
                            "media_type": "application/stix+json;version=2.1",
                        }
                        for o in objs
                    ],
                }
                for title, objs in collections.items()
            ],
        },
    }
    (tmp / "medallion-data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(tmp / "medallion-data.json"),
        },
        "users": users,
        "taxii": {"max_page_size": max_page_size},
    }
    config_path = tmp / "medallion-config.json"
    config_path.write_text(json.dumps(config))
    record_dir = tmp / "medallion-posts"
    record_dir.mkdir(exist_ok=True)
    process = _spawn(config_path, port, record_dir)
    return Medallion(
        url=f"http://127.0.0.1:{port}",
        process=process,
        record_dir=record_dir,
        users=users,
        collections=ids,
        config_path=config_path,
        port=port,
    )
