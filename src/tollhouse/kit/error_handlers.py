"""The handlers that put every failure into the one error shape (`kit/errors.py`)."""

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

from tollhouse.kit.errors import HTTP_CODES, TollhouseError, envelope

log = structlog.get_logger("tollhouse.errors")


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
