"""`POST /api/data` and `GET /api/usage` on the lean path (kit/hot_routes.py).

The handlers are the routes' own (`routes.track_usage`, `routes.get_usage`); what FastAPI
would inject is resolved here by direct calls to the same functions its dependencies call:
the caller through `metering.guards.rate_limited_end_user` (identity/caller.py's one
resolver, then the project's rate limit), the body with FastAPI's own rules (JSON only with a
JSON content type; `DataRequest` validated, errors located under `body`), the session as a
unit of work committed before the answer (`db.session.unit_of_work`).
"""

from __future__ import annotations

import email.message
import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.routing import BaseRoute

from tollhouse.db.session import database, unit_of_work
from tollhouse.kit.hot_routes import Endpoint
from tollhouse.kit.idempotency import Idempotency
from tollhouse.metering.guards import rate_limited_end_user
from tollhouse.platform_api import routes
from tollhouse.platform_api.schemas import DataRequest

_DATA_BODY: TypeAdapter[DataRequest | None] = TypeAdapter(DataRequest | None)


async def _data_body(request: Request) -> DataRequest | None:
    """The optional body as FastAPI reads it for `body: DataRequest | None = None`."""
    raw = await request.body()
    if not raw:
        return None
    value: Any = raw
    content_type = request.headers.get("content-type")
    if content_type:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() == "application" and (
            subtype == "json" or subtype.endswith("+json")
        ):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body", exc.pos),
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": exc.msg},
                        }
                    ]
                ) from exc
    try:
        return _DATA_BODY.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


async def track_usage(request: Request) -> Any:
    caller = await rate_limited_end_user(request)
    body = await _data_body(request)
    async with unit_of_work(database(request)) as session:
        idempotency = Idempotency(request, session)
        return await routes.track_usage(caller, request, session, idempotency, body)


async def get_usage(request: Request) -> Any:
    caller = await rate_limited_end_user(request)
    async with unit_of_work(database(request)) as session:
        return await routes.get_usage(caller, request, session)


def _route(method: str, path: str) -> BaseRoute:
    return next(
        route
        for route in routes.router.routes
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ())
    )


ROUTES: dict[tuple[str, str], tuple[BaseRoute, Endpoint]] = {
    ("POST", "/api/data"): (_route("POST", "/api/data"), track_usage),
    ("GET", "/api/usage"): (_route("GET", "/api/usage"), get_usage),
}
