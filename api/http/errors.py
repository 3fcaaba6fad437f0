"""API errors and the one JSON error shape: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from typing import Any

#: Every error code the API answers with, and its HTTP status (also listed in the OpenAPI spec).
ERROR_CODES: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "idempotency_key_reused": 422,
    "too_many_requests": 429,
    "internal_error": 500,
    "store_unavailable": 503,
    "not_ready": 503,
}


class ApiError(Exception):
    """An error answered as JSON with ``status`` and ``code``; ``message`` is shown to the client."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    """No usable credentials: missing, malformed or wrong bearer token."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="movietime"'})


class Forbidden(ApiError):
    """Valid credentials that do not allow this (another user's data)."""

    status = 403
    code = "forbidden"


class RequestTimeout(ApiError):
    """The request (its headers or its body) did not arrive within the server's read deadline:
    a client that stops sending must not hold a worker (``api.http.worker``)."""

    status = 408
    code = "request_timeout"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class KeyReused(ApiError):
    """An ``Idempotency-Key`` sent again with another request than the first (the IETF draft's 422)."""

    status = 422
    code = "idempotency_key_reused"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_s)))})


class NotFound(ApiError):
    status = 404
    code = "not_found"


class StoreUnavailable(ApiError):
    """The store did not answer (down, unreachable, timed out)."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str = "the data store is unavailable; try again shortly") -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class NotReady(ApiError):
    """The store answers but serves no published version yet (the pipeline has not run)."""

    status = 503
    code = "not_ready"

    def __init__(self, message: str = "no model is published yet: run the pipeline first") -> None:
        super().__init__(message, headers={"Retry-After": "5"})


def error_body(code: str, message: str) -> dict[str, Any]:
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return {"error": {"code": code, "message": message}}
