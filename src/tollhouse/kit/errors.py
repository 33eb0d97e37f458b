"""The one error shape and the errors every domain raises.

`{"error": "<stable_code>", "message": "<human sentence>", "detail": ..., "request_id": "..."}`

An error may add top-level fields (`extra`) where an SDK reads them there; they never
replace the four above. The handlers that put every failure into this shape live in
`kit/error_handlers.py`: domains import this module, and the CLI reaches them through
services, so it stays free of FastAPI (a `tollhouse` command must not pay for the web stack).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollhouse.kit.request_context import current_request_id


class TollhouseError(Exception):
    """Base of every error we raise on purpose; domains subclass it with their own codes."""

    status_code = 400
    code = "bad_request"
    message = "The request could not be processed."
    # When True the request's writes are committed even though the request fails.
    keeps_writes = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.message)


class BadRequest(TollhouseError):
    pass


class Unauthorized(TollhouseError):
    status_code = 401
    code = "unauthorized"
    message = "Authentication required."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(TollhouseError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class NotFound(TollhouseError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(TollhouseError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class PayloadTooLarge(TollhouseError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is too large."


class ValidationFailed(TollhouseError):
    status_code = 422
    code = "validation_error"
    message = "The request is not valid."


class ServiceUnavailable(TollhouseError):
    status_code = 503
    code = "service_unavailable"
    message = "This service is not available right now."


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def envelope(
    code: str, message: str, detail: Any = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": code,
        "message": message,
        "detail": detail,
        "request_id": current_request_id(),
    }
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return body
