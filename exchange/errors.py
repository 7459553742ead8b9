"""Domain errors. Services raise these; the REST and TAXII layers turn them into responses."""

from __future__ import annotations


class ExchangeError(Exception):
    status: int = 500
    title: str = "Internal error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequestError(ExchangeError):
    status = 400
    title = "Bad request"


class InvalidJsonError(BadRequestError, ValueError):
    title = "Malformed JSON"


class InvalidStixError(ExchangeError):
    status = 422
    title = "Invalid STIX"


class InvalidCursorError(BadRequestError):
    title = "Invalid next cursor"


class NotFoundError(ExchangeError):
    status = 404
    title = "Not found"


class ConflictError(ExchangeError):
    status = 409
    title = "Conflict"


class UnauthorizedError(ExchangeError):
    status = 401
    title = "Unauthorized"


class ForbiddenError(ExchangeError):
    status = 403
    title = "Forbidden"


class PolicyDeniedError(ForbiddenError):
    title = "Denied by sharing agreement"


class PayloadTooLargeError(ExchangeError):
    status = 413
    title = "Payload too large"


class ServiceUnavailableError(ExchangeError):
    """Something the request needs is not available now (a busy or unreachable database, no feed
    launcher wired): worth retrying later."""

    status = 503
    title = "Service unavailable"
    retry_after_seconds = 5


class RateLimitedError(ExchangeError):
    """The caller sent more than its limit allows (a credential's rate, an address's failed
    logins): retry after `retry_after_seconds`."""

    status = 429
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, retry_after_seconds)
