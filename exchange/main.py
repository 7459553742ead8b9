"""create_app: the FastAPI application with TAXII mounted at /taxii2."""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import DataError, InternalError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from exchange.agreement.routes import router as agreement_router
from exchange.audit import anchor as audit_anchor
from exchange.audit.routes import router as audit_router
from exchange.auth.keys import VerifiedKeyCache
from exchange.config import Settings, get_settings
from exchange.context import AppContext
from exchange.database.core import (
    as_domain_error,
    describe,
    make_engine,
    make_session_factory,
    refuses_writes,
)
from exchange.database.replica import ReadSessions
from exchange.errors import ExchangeError, RateLimitedError, ServiceUnavailableError
from exchange.export.routes import router as export_router
from exchange.feed.launcher import FeedLauncherFactory
from exchange.feed.routes import router as feed_router
from exchange.incident.routes import router as publish_router
from exchange.intel.routes import router as objects_router
from exchange.limits.middleware import EdgeMiddleware
from exchange.limits.service import Limits
from exchange.monitoring import router as monitoring_router
from exchange.partner.routes import router as partner_router
from exchange.push.routes import router as push_router
from exchange.report.routes import router as report_router
from exchange.signing import KeyRing, default_directory
from exchange.signing.routes import router as jwks_router
from exchange.ui import docs as ui_docs
from exchange.ui import routes as ui_routes
from exchange.ui.web import error_page
from policies.schemas import AgreementError
from taxii_server import create_taxii_app

log = logging.getLogger(__name__)
# How long a connection attempt to the read replica may take before reads go to the primary.
REPLICA_CONNECT_SECONDS = 3


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """The methods some route of `app` answers at the path of `scope`, for an Allow header."""
    # Asked method by method through each route's own `matches` (included routers answer for
    # the routes they hold); only 405s come here.
    # Asked at the app's own root: inside a mount (the static files) the scope's root_path
    # already includes the mount's prefix, and no route of the app matched it.
    top = {**scope, "root_path": scope.get("app_root_path", "")}
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Mount):  # matches whatever the method: ask what it serves
            if isinstance(route.app, StaticFiles) and route.matches(top)[0] == Match.FULL:
                methods |= {"GET", "HEAD"}
            continue
        methods |= {m for m in _METHODS if route.matches({**top, "method": m})[0] == Match.FULL}
    return ", ".join(sorted(methods))


def create_app(settings: Settings | None = None, *, feeds: FeedLauncherFactory | None = None) -> FastAPI:
    """A new app bound to `settings` (read from the environment when omitted).

    `feeds` builds the feed launcher (`feeds.launcher.Launcher` in `exchange serve`); without one,
    adding, changing or running feeds and pushes answers 503 instead of skipping their checks.
    """
    settings = settings or get_settings()
    settings.ensure_data_dir()
    settings.ensure_secret()
    engine = make_engine(settings.sqlalchemy_url, busy_seconds=settings.database_busy_seconds)
    factory = make_session_factory(engine)
    replica_factory = read_sessions = None
    if settings.database_replica_url:
        replica_engine = make_engine(
            settings.database_replica_url,
            busy_seconds=settings.database_busy_seconds,
            connect_timeout=REPLICA_CONNECT_SECONDS,
        )
        replica_factory = make_session_factory(replica_engine)
        read_sessions = ReadSessions(
            replica_factory, factory, retry_seconds=settings.database_replica_retry_seconds
        )
    key_cache = VerifiedKeyCache(settings.key_cache_seconds)
    keyring = KeyRing(default_directory(settings))
    keyring.ensure()
    audit_anchor.attach(engine, keyring)

    app = FastAPI(
        title="National CERT information exchange",
        openapi_url="/api/v1/openapi.json",
        # The docs page is the exchange's own (exchange.ui.docs): Swagger UI served from here,
        # never from a CDN an air-gapped CERT cannot reach.
        docs_url=None,
        redoc_url=None,
    )
    launcher = feeds(settings=settings, sessions=factory, keyring=keyring) if feeds is not None else None
    limits = Limits.build(settings, factory, key_cache)
    AppContext(
        settings,
        engine,
        factory,
        keyring,
        key_cache,
        launcher,
        replica_sessions=read_sessions,
        limits=limits,
    ).install(app)
    # Outside Starlette's own error middleware, so that even its bare 500 carries the headers.
    inner_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: EdgeMiddleware(inner_stack(), settings=settings)  # type: ignore[method-assign]

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """Ready when the database answers."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # the point is to report any failure
            log.error("health check: database unreachable: %s", type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"},
                status_code=503,
                headers={"Retry-After": str(ServiceUnavailableError.retry_after_seconds)},
            )
        answer: dict[str, str] = {"status": "ok", "database": engine.dialect.name}
        if replica_factory is not None:
            # Reported, not required: writes and pulls of the primary still work without it.
            try:
                with replica_factory() as db:
                    db.execute(text("SELECT 1"))
                answer["replica"] = "ok"
            except Exception as exc:
                log.error("health check: replica unreachable: %s", type(exc).__name__)
                answer["replica"] = "unreachable"
        return JSONResponse(answer)

    @app.exception_handler(ExchangeError)
    def _exchange_error(request: Request, exc: ExchangeError) -> Response:
        if request.url.path.startswith("/ui/") and not request.url.path.startswith("/ui/static/"):
            page = error_page(request, exc.status, exc.message)
            if isinstance(exc, ServiceUnavailableError | RateLimitedError):
                page.headers["Retry-After"] = str(exc.retry_after_seconds)
            return page
        headers = {"WWW-Authenticate": 'Bearer realm="exchange"'} if exc.status == 401 else None
        if isinstance(exc, ServiceUnavailableError | RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after_seconds)}
        return JSONResponse(
            {"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.message},
            status_code=exc.status,
            media_type="application/problem+json",
            headers=headers,
        )

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Routing misses (a path no route matches, e.g. /taxii2/... with a newline, which the
        # mount's pattern does not match) in the shape of the interface the path names.
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110 section 15.5.6: every method the path takes, not only the first route's
            # (Starlette names the methods of the first route whose path matched).
            headers["Allow"] = allowed_methods(request.app, request.scope)
        if request.url.path.startswith("/ui/") and exc.status_code in (404, 405):
            page = error_page(request, exc.status_code, title)
            page.headers.update(headers)
            return page
        body: dict[str, object]
        if request.url.path.startswith("/taxii2"):
            body = {"title": title, "description": detail, "http_status": str(exc.status_code)}
            media = "application/taxii+json;version=2.1"
        else:
            body = {"type": "about:blank", "title": title, "status": exc.status_code, "detail": detail}
            media = "application/problem+json"
        return Response(orjson.dumps(body), status_code=exc.status_code, media_type=media, headers=headers)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Never the offending input itself: it may be a secret (a header value, a password).
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:20]]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Invalid request",
                "status": 422,
                "detail": detail,
                "errors": errors,
            },
            status_code=422,
            media_type="application/problem+json",
        )

    @app.exception_handler(InternalError)
    def _internal_database_error(request: Request, exc: Exception) -> Response:
        if not refuses_writes(exc):  # type: ignore[arg-type]
            raise exc  # a bug: the 500 it is
        return _database_error(request, exc)

    @app.exception_handler(DataError)
    @app.exception_handler(OperationalError)
    def _database_error(request: Request, exc: Exception) -> Response:
        log.warning("%s %s: database error %s", request.method, request.url.path[:200], describe(exc))  # type: ignore[arg-type]
        return _exchange_error(request, as_domain_error(exc))  # type: ignore[arg-type]

    @app.exception_handler(AgreementError)
    def _agreement_error(_request: Request, exc: AgreementError) -> JSONResponse:
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Invalid agreement",
                "status": 422,
                "detail": str(exc),
                "problems": [{"field": f, "reason": r} for f, r in exc.problems],
            },
            status_code=422,
            media_type="application/problem+json",
        )

    taxii = create_taxii_app(settings, factory, key_cache, keyring, read_factory=read_sessions, limits=limits)
    # First in the routing table: partners pull page after page, and each request is matched
    # against the routes in order (FastAPI builds each API route's context as it tries it).
    app.mount("/taxii2", WSGIMiddleware(taxii, workers=8))  # type: ignore[arg-type]

    for router in (
        partner_router,
        agreement_router,
        audit_router,
        export_router,
        feed_router,
        jwks_router,
        monitoring_router,
        objects_router,
        publish_router,
        push_router,
        report_router,
    ):
        app.include_router(router)

    ui_routes.install(app)
    ui_docs.install(app)

    return app
