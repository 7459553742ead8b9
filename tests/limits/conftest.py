"""Servers of their own for the limits tests: each keeps its own buckets and throttles."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from exchange.agreement import service as agreement_service
from exchange.config import Settings
from exchange.main import create_app
from exchange.partner import service as partner_service
from tests.support.taxii import LiveServer, free_port, start_uvicorn


@dataclass
class Limited(LiveServer):
    app: FastAPI | None = None

    def partner(self, rate_limit: dict[str, Any] | None = None) -> tuple[str, tuple[str, str], Any]:
        """A partner with an active agreement reading one collection: (slug, (id, key), coll)."""
        coll = self.collection()
        slug = f"p-{uuid.uuid4().hex[:8]}"
        today = date.today()
        doc: dict[str, Any] = {
            "partner": slug,
            "title": "MoU",
            "valid_from": (today - timedelta(days=1)).isoformat(),
            "valid_until": (today + timedelta(days=30)).isoformat(),
            "status": "active",
            "read": {"collections": [coll.alias], "max_tlp": "amber"},
        }
        if rate_limit is not None:
            doc["rate_limit"] = rate_limit
        with self.session() as db:
            _, credential, key = partner_service.create(db, slug=slug, name="P", country="IN", actor="test")
            agreement_service.apply(db, doc, actor="test")
        return slug, (credential.id, key), coll

    def second_credential(self, slug: str) -> tuple[str, str]:
        with self.session() as db:
            partner = partner_service.get_by_slug(db, slug)
            credential, key = partner_service.create_credential(db, partner=partner, actor="test")
        return credential.id, key


def _serve(settings: Settings, engine: Engine, **overrides: Any) -> Iterator[Limited]:
    limited = settings.model_copy(update=overrides)
    app = create_app(limited)
    port = free_port()
    server, thread = start_uvicorn(app, port)
    yield Limited(url=f"http://127.0.0.1:{port}", settings=limited, engine=engine, app=app)
    server.should_exit = True
    thread.join(timeout=10)


LIMITS = {
    "rate_limit_per_minute": 1,
    "rate_limit_burst": 3,
    "login_failures_per_minute": 3,
    "max_content_length": 64 * 1024,
}


@pytest.fixture(scope="module")
def strict(settings: Settings, engine: Engine) -> Iterator[Limited]:
    """Tight limits, https public URL (HSTS), no trusted proxy."""
    yield from _serve(settings, engine, public_url="https://exchange.example", **LIMITS)


@pytest.fixture(scope="module")
def proxied(settings: Settings, engine: Engine) -> Iterator[Limited]:
    """Tight limits behind a trusted proxy on 127.0.0.1 (the tests play the proxy)."""
    yield from _serve(settings, engine, trusted_proxies="127.0.0.1", **LIMITS)


@pytest.fixture(scope="module")
def untrusting(settings: Settings, engine: Engine) -> Iterator[Limited]:
    """A proxy is configured, but it is not the peer these tests connect from."""
    yield from _serve(settings, engine, trusted_proxies="10.0.0.1", **LIMITS)


@pytest.fixture(scope="module")
def staff_limited(settings: Settings, engine: Engine) -> Iterator[Limited]:
    """A staff rate (1 a minute, burst 3): pages, REST and TAXII share each credential's bucket."""
    yield from _serve(settings, engine, rate_limit_staff_per_minute=1, rate_limit_staff_burst=3)
