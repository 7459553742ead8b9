"""create_app: the FastAPI application with TAXII mounted at /taxii2."""
from __future__ import annotations

import logging

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from exchange.auth.keys import VerifiedKeyCache
from exchange.config import Settings, get_settings
from exchange.database.core import make_engine, make_session_factory
from taxii_server import create_taxii_app

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app bound to `settings` (read from the environment when omitted)."""
    settings = settings or get_settings()
    settings.ensure_data_dir()
    engine = make_engine(settings.sqlalchemy_url)
    factory = make_session_factory(engine)
    key_cache = VerifiedKeyCache(settings.key_cache_seconds)

    app = FastAPI(
        title="National CERT information exchange",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = factory
    app.state.key_cache = key_cache

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """Ready when the database answers."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # the point is to report any failure
            log.error("health check: database unreachable: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": engine.dialect.name})

    taxii = create_taxii_app(settings, factory, key_cache)
    app.mount("/taxii2", WSGIMiddleware(taxii, workers=8))  # type: ignore[arg-type]
    return app
