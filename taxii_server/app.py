"""create_taxii_app: a fresh Flask app with medallion's TAXII 2.1 views over our SqlBackend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask, Request
from flask.json.provider import JSONProvider
from medallion.views import collections, discovery, manifest, objects
from sqlalchemy.orm import Session, sessionmaker

from exchange.auth.keys import VerifiedKeyCache
from exchange.config import Settings
from exchange.errors import InvalidJsonError
from exchange.intel import service
from exchange.intel.strictjson import loads_strict
from exchange.limits.service import Limits
from exchange.signing import KeyRing
from taxii_server import auth, context, errors, negotiation
from taxii_server.backend import SqlBackend
from taxii_server.cursor import CursorCodec


@dataclass
class TaxiiContext:
    session_factory: sessionmaker[Session]
    key_cache: VerifiedKeyCache
    settings: Settings
    limits: Limits | None = None

    def __post_init__(self) -> None:
        # Proxies whose forwarded client certificates are believed (parsed once).
        self.trusted_proxies = self.settings.trusted_proxy_networks


class _OrjsonProvider(JSONProvider):
    """orjson out (stored canonical text is spliced in as orjson.Fragment); strict JSON in."""

    max_depth = 64

    def dumps(self, obj: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return orjson.dumps(obj)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_strict(s, max_depth=self.max_depth)


class _TaxiiRequest(Request):
    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if isinstance(e, InvalidJsonError):
            raise e
        raise InvalidJsonError(f"the body is not valid JSON: {e}")


def create_taxii_app(
    settings: Settings,
    session_factory: sessionmaker[Session],
    key_cache: VerifiedKeyCache,
    keyring: KeyRing,
    *,
    read_factory: Callable[[], Session] | None = None,
    limits: Limits | None = None,
) -> Flask:
    """A new Flask app serving TAXII 2.1 at its root (mount it at /taxii2).

    With `read_factory` (a streaming replica) pages of objects, manifests and versions are read
    there; the caller, its access and every write (the ledger included) stay on `session_factory`.
    """
    app = Flask("taxii_server")
    app.request_class = _TaxiiRequest
    provider = _OrjsonProvider(app)
    provider.max_depth = settings.max_json_depth
    app.json = provider
    app.config["EXCHANGE_MAX_BODY"] = settings.max_content_length
    app.extensions["exchange"] = TaxiiContext(session_factory, key_cache, settings, limits)
    # Read by medallion's views.
    app.taxii_config = {"max_page_size": settings.max_page_size}  # type: ignore[attr-defined]
    app.users_backend = {}  # type: ignore[attr-defined]
    app.medallion_backend = SqlBackend(  # type: ignore[attr-defined]
        session_factory=session_factory,
        read_factory=read_factory,
        settings=settings,
        codec=CursorCodec(settings.resolved_secret()),
        keyring=keyring,
    )

    auth.install()
    errors.install(app)

    def body_limit(root_name: str) -> int | None:
        with session_factory() as db:
            root = service.get_api_root(db, root_name)
            return root.max_content_length if root else None

    negotiation.install(app, max_content_length_for=body_limit)

    # Discovery lives at the mount point itself (/taxii2/), not at medallion's /taxii2/taxii2/.
    app.add_url_rule("/", "server_discovery", discovery.get_server_discovery, methods=["GET"])
    app.add_url_rule("/<string:api_root>/", "api_root", discovery.get_api_root_information, methods=["GET"])
    app.add_url_rule(
        "/<string:api_root>/status/<string:status_id>/", "status", discovery.get_status, methods=["GET"]
    )
    app.register_blueprint(collections.collections_bp)
    app.register_blueprint(manifest.manifest_bp)
    app.register_blueprint(objects.objects_bp)

    @app.teardown_request
    def _close_session(_exc: BaseException | None) -> None:
        context.close()

    return app
