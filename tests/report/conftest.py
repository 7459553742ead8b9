from __future__ import annotations

import pytest

from tests.agreement.conftest import Partners


@pytest.fixture
def partners(live_server) -> Partners:  # type: ignore[no-untyped-def]
    return Partners(live_server)


@pytest.fixture
def cli_env(tmp_path, settings, engine):  # type: ignore[no-untyped-def]
    """The `exchange` command's environment, on the live server's own database (SQLite or
    PostgreSQL) and with its secret and signing keys."""
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
