"""Every TAXII error is a TAXII 2.1 error resource (section 3.6.1) with the TAXII media type."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, request
from medallion.exceptions import BackendError, ProcessingError
from sqlalchemy.exc import DataError, InternalError, OperationalError
from werkzeug.exceptions import HTTPException

from exchange.database.core import as_domain_error, describe, refuses_writes
from exchange.errors import ExchangeError, RateLimitedError, ServiceUnavailableError

log = logging.getLogger(__name__)
TAXII_MEDIA = "application/taxii+json;version=2.1"


def error_response(status: int, title: str, description: str) -> Response:
    body = {"title": title, "description": description, "http_status": str(status)}
    return Response(orjson.dumps(body), status=status, mimetype=TAXII_MEDIA)


def install(app: Flask) -> None:
    """Register handlers so nothing leaves as HTML or as a bare 500."""

    @app.errorhandler(ProcessingError)
    def _processing(error: ProcessingError) -> Response:
        title = {
            400: "Bad request",
            403: "Forbidden",
            404: "Not found",
            406: "Not acceptable",
            413: "Payload too large",
            415: "Unsupported media type",
            422: "Unprocessable",
        }
        response = error_response(error.status, title.get(error.status, "Error"), str(error))
        for name, value in (getattr(error, "headers", None) or {}).items():
            response.headers[name] = value
        return response

    @app.errorhandler(ExchangeError)
    def _exchange(error: ExchangeError) -> Response:
        response = error_response(error.status, error.title, error.message)
        if isinstance(error, ServiceUnavailableError | RateLimitedError):
            response.headers["Retry-After"] = str(error.retry_after_seconds)
        return response

    @app.errorhandler(DataError)
    @app.errorhandler(OperationalError)
    def _database(error: DataError | OperationalError | InternalError) -> Response:
        log.warning("TAXII %s %s: database error %s", request.method, request.path[:200], describe(error))
        return _exchange(as_domain_error(error))

    @app.errorhandler(InternalError)
    def _internal(error: InternalError) -> Response:
        if refuses_writes(error):
            return _database(error)
        return _unexpected(error)

    @app.errorhandler(BackendError)
    def _backend(error: BackendError) -> Response:
        log.error("TAXII backend error: %s", error)
        return error_response(error.status, "Backend error", "The server could not complete the request")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        description = error.description or error.name
        response = error_response(status, error.name, description)
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error in the TAXII layer")
        return error_response(500, "Internal error", "The server could not complete the request")
