"""AppContext: what one app shares across its requests, built once by `create_app`; and the
typed dependencies routes read it through (never `request.app.state` directly)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from exchange.auth.keys import VerifiedKeyCache
from exchange.config import Settings
from exchange.errors import InvalidJsonError, ServiceUnavailableError
from exchange.feed.launcher import FeedLauncher
from exchange.intel.strictjson import loads_strict
from exchange.limits.service import Limits
from exchange.signing import KeyRing


@dataclass(frozen=True)
class AppContext:
    """The settings, database, keys and feed launcher of one app instance."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: KeyRing
    key_cache: VerifiedKeyCache
    feeds: FeedLauncher | None = None  # None: this app starts no feed runs or pushes
    # Sessions on the read replica (EXCHANGE_DATABASE_REPLICA_URL), or on the primary while the
    # replica is down (exchange.database.replica); None: reads use the primary.
    replica_sessions: Callable[[], Session] | None = None
    limits: Limits | None = None  # None: no rate limits or login throttling (tests)

    @cached_property
    def trusted_proxies(self) -> list[Any]:
        """The proxies whose forwarded client certificates are believed (EXCHANGE_TRUSTED_PROXIES)."""
        return self.settings.trusted_proxy_networks

    @property
    def read_sessions(self) -> Callable[[], Session]:
        """Where REST and TAXII reads go: the replica when there is one, else the primary."""
        return self.replica_sessions or self.sessions

    def install(self, app: FastAPI) -> None:
        """Store the context on `app`, once."""
        if getattr(app.state, "context", None) is not None:
            raise RuntimeError("this app already has a context")
        app.state.context = self


def context_of(app: FastAPI) -> AppContext:
    """The context `create_app` stored on `app`."""
    ctx = getattr(app.state, "context", None)
    if not isinstance(ctx, AppContext):
        raise RuntimeError("this app was not built by create_app: it has no AppContext")
    return ctx


def get_context(request: Request) -> AppContext:
    return context_of(request.app)


Ctx = Annotated[AppContext, Depends(get_context)]


def _settings(ctx: Ctx) -> Settings:
    return ctx.settings


def _keyring(ctx: Ctx) -> KeyRing:
    return ctx.keyring


def _key_cache(ctx: Ctx) -> VerifiedKeyCache:
    return ctx.key_cache


def _sessions(ctx: Ctx) -> sessionmaker[Session]:
    return ctx.sessions


def get_feed_launcher(ctx: Ctx) -> FeedLauncher:
    """The feed launcher, or 503: without one, feed options cannot be checked nor runs started."""
    if ctx.feeds is None:
        raise ServiceUnavailableError(
            "feed and push management is not available in this process (no feed launcher is wired "
            "in); nothing was changed"
        )
    return ctx.feeds


SettingsDep = Annotated[Settings, Depends(_settings)]
KeyRingDep = Annotated[KeyRing, Depends(_keyring)]
KeyCacheDep = Annotated[VerifiedKeyCache, Depends(_key_cache)]
SessionsDep = Annotated[sessionmaker[Session], Depends(_sessions)]
FeedLauncherDep = Annotated[FeedLauncher, Depends(get_feed_launcher)]


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        """The body as TAXII and bundles read theirs (exchange.intel.strictjson): no duplicate
        names, nesting within EXCHANGE_MAX_JSON_DEPTH (a REST version 300 levels deep was stored,
        then its object could not be shown), no NaN, exact integers."""
        if not hasattr(self, "_json"):
            depth = context_of(self.app).settings.max_json_depth
            try:
                self._json = loads_strict(await self.body(), max_depth=depth)
            except InvalidJsonError as exc:
                # HTTPException: FastAPI passes it on as it is (any other error while it parses
                # the body becomes an anonymous 400).
                raise HTTPException(400, f"the body is not strict JSON: {exc}") from None
        return self._json


class StrictJsonRoute(APIRoute):
    """A REST route whose JSON body is read strictly (400 naming what is wrong), as TAXII and
    /api/v1/bundles read theirs: json.loads kept the last of duplicate keys, so
    {"tlp": "red", "tlp": "clear"} was published at clear. Every /api/v1 router is built with it
    (tests check)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict
