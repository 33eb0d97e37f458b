"""The one error shape, and the handlers that put every failure into it.

`{"error": "<stable_code>", "message": "<human sentence>", "detail": ..., "request_id": "..."}`

An error may add top-level fields (`extra`) where an SDK reads them there; they never
replace the four above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tollhouse.kit.request_context import current_request_id

log = structlog.get_logger("tollhouse.errors")


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


def error_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = envelope(code, message, detail, extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The offending input is left out on purpose: it may be huge or carry a secret.
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


async def _on_tollhouse_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TollhouseError)
    return error_response(
        exc.status_code, exc.code, exc.message, exc.detail, exc.headers, exc.extra
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").capitalize()
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = "No route matches this path."
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method the path takes: FastAPI makes one route per method, and Starlette's 405
    names only the first route that matched the path."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        if route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    if any(err["type"] == "json_invalid" for err in errors):
        return error_response(400, "malformed_json", "The request body is not valid JSON.", errors)
    content_type = request.headers.get("content-type", "")
    body_unread = any(err["loc"] == ["body"] and err["type"] != "missing" for err in errors)
    if body_unread and not _is_json(content_type):
        # FastAPI reads a body as JSON only when it says so; e.g. `curl -d` says form data.
        return error_response(
            415,
            "unsupported_media_type",
            "The body must be JSON sent with Content-Type: application/json "
            f"(this request said {content_type or 'nothing'}).",
        )
    return error_response(422, "validation_error", "The request is not valid.", errors)


async def _on_unhandled(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", exc_type=type(exc).__name__)
    return error_response(500, "internal_error", "Something went wrong on our side.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TollhouseError, _on_tollhouse_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unhandled)
