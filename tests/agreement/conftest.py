from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from exchange.agreement import service as agreement_service
from exchange.partner import service as partner_service


def agreement_doc(
    slug: str,
    *,
    read: dict[str, Any] | None = None,
    write: dict[str, Any] | None = None,
    status: str = "active",
    days_before: int = 30,
    days_after: int = 365,
) -> dict[str, Any]:
    today = date.today()
    doc: dict[str, Any] = {
        "partner": slug,
        "title": f"MoU with {slug}",
        "valid_from": (today - timedelta(days=days_before)).isoformat(),
        "valid_until": (today + timedelta(days=days_after)).isoformat(),
        "status": status,
    }
    if read is not None:
        doc["read"] = read
    if write is not None:
        doc["write"] = write
    return doc


class Partners:
    """Make partners with agreements on the live server's database."""

    def __init__(self, live_server) -> None:  # type: ignore[no-untyped-def]
        self.live = live_server

    def add(self, doc_for=None) -> tuple[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
        slug = f"p-{uuid.uuid4().hex[:8]}"
        with self.live.session() as db:
            _, credential, key = partner_service.create(
                db, slug=slug, name=slug.upper(), country="IN", actor="test"
            )
            if doc_for is not None:
                agreement_service.apply(db, doc_for(slug), actor="test")
        return slug, (credential.id, key)

    def apply(self, doc: dict[str, Any]) -> None:
        with self.live.session() as db:
            agreement_service.apply(db, doc, actor="test")


@pytest.fixture
def partners(live_server) -> Partners:  # type: ignore[no-untyped-def]
    return Partners(live_server)


@pytest.fixture
def cli_env(tmp_path, settings, engine):  # type: ignore[no-untyped-def]
    """The `exchange` command's environment on the live server's own database (SQLite or
    PostgreSQL), with its secret and signing keys."""
    from exchange.signing import default_directory
    from tests.support.cli import environment

    data = tmp_path / "data"
    data.mkdir()
    return environment(
        data,
        settings.sqlalchemy_url,
        EXCHANGE_SIGNING_KEY_DIR=str(default_directory(settings)),
        EXCHANGE_SECRET_KEY=settings.resolved_secret().decode(),
    )
