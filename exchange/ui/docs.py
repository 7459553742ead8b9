"""The API docs at /api/v1/docs: Swagger UI served by the exchange itself (no CDN), and an
OpenAPI that declares the Bearer scheme so "Authorize" takes an API key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from exchange.limits.middleware import CSP

ASSETS = "/api/v1/docs/assets"
# Swagger UI 5 (OpenAPI 3.1, which FastAPI writes) as the fastapi-offline package ships it (MIT).
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/ui/static/swagger-init.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve the docs page and Swagger UI's files, and add the security schemes to the OpenAPI."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI), name="swagger-ui")

    @app.get("/api/v1/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        html = PAGE.format(title=app.title, assets=ASSETS, openapi=app.openapi_url)
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `Authorization: Bearer <credential-id>.<secret>`",
                },
                "basic": {"type": "http", "scheme": "basic", "description": "credential id and key"},
            }
            schema["security"] = [{"bearer": []}, {"basic": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
