"""A lean dispatcher for the few routes every metered call takes.

FastAPI spends more on a tiny request than the request's own work: the router tries every
route in order (`POST /api/data` comes after ~30 others, `/gw` after ~90), then solves the
endpoint's dependency tree with an exit stack per request. `HotRoutes` sits inside our
middleware (so the request id, security headers, access log, metrics and body limit are the
same as everywhere) and answers an exact `(method, path)` with one dict lookup; the endpoint
resolves what it needs by calling the same guards the dependencies call. Everything else goes
on to the app untouched.

Errors go through the app's own exception handlers (kit/errors.py), found by the exception's
class as Starlette finds them, so a refusal here is byte-for-byte the one the router would
send. `scope["route"]` is set to the app's route of the same path, so metrics and the access
log keep their route template.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.encoders import jsonable_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Any]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class HotRoutes:
    """`routes`: (method, path) → (the app's route there, for its template; an endpoint
    returning a Response or a JSON-able value)."""

    def __init__(
        self, app: ASGIApp, routes: Mapping[tuple[str, str], tuple[BaseRoute, Endpoint]]
    ) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"], endpoint = hot
        request = Request(scope, receive)
        try:
            result = await endpoint(request)
            response = result if isinstance(result, Response) else _json(result)
        except Exception as exc:
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """What the app's exception handlers answer for `exc` (kit/errors.py)."""
        handlers: dict[Any, ExceptionHandler] = request.app.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc


def _json(result: Any) -> Response:
    # As FastAPI renders a returned value: jsonable_encoder, then Starlette's JSONResponse.
    return JSONResponse(result if isinstance(result, dict) else jsonable_encoder(result))
