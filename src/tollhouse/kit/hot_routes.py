"""A lean dispatcher for the few routes every metered call takes.

FastAPI spends more on a tiny request than the request's own work: the router tries every
route in order (`POST /api/data` comes after ~30 others, `/gw` after ~90), then solves the
endpoint's dependency tree with an exit stack per request. `HotRoutes` sits inside our
middleware (so the request id, security headers, access log, metrics and body limit are the
same as everywhere) and answers an exact `(method, path)` with one dict lookup, or a path
under a fixed prefix (`/gw/`) with that route's own pattern; the endpoint resolves what it
needs by calling the same guards the dependencies call. The app-wide guards (the app's
`dependencies`, e.g. the NUL refusal) run first, as FastAPI runs them. Everything else —
a path the pattern does not fit, a method the route does not take — goes on to the app
untouched.

Errors go through the app's own exception handlers (kit/errors.py), found by the exception's
class as Starlette finds them, so a refusal here is byte-for-byte the one the router would
send. `scope["route"]` is set to the app's route of the same path, so metrics and the access
log keep their route template; a prefix route's `scope["path_params"]` are its pattern's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi.encoders import jsonable_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Any]]
Guard = Callable[[Request], Awaitable[None]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class HotRoutes:
    """`routes`: (method, path) → (the app's route there, for its template; an endpoint
    returning a Response or a JSON-able value). `prefixes`: path prefix → (the app's route
    whose pattern starts with it, its endpoint), for any method that route takes. `guards`:
    the app-wide dependencies, run before every hot endpoint."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], tuple[BaseRoute, Endpoint]],
        prefixes: Mapping[str, tuple[Route, Endpoint]] | None = None,
        guards: Sequence[Guard] = (),
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.prefixes = tuple((prefix, *hot) for prefix, hot in (prefixes or {}).items())
        self.guards = tuple(guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hot = self.routes.get((scope["method"], scope["path"])) or self._under_prefix(scope)
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"], endpoint = hot
        request = Request(scope, receive)
        try:
            for guard in self.guards:
                await guard(request)
            result = await endpoint(request)
            response = result if isinstance(result, Response) else _json(result)
        except Exception as exc:
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    def _under_prefix(self, scope: Scope) -> tuple[BaseRoute, Endpoint] | None:
        """The prefix route whose pattern fits the path and whose methods take the method
        (its path parameters put in the scope, converted as the router converts them)."""
        path: str = scope["path"]
        for prefix, route, endpoint in self.prefixes:
            if not path.startswith(prefix):
                continue
            match = route.path_regex.match(path)
            if match is None or (
                route.methods is not None and scope["method"] not in route.methods
            ):
                return None
            convertors = route.param_convertors
            scope["path_params"] = {
                name: convertors[name].convert(value) for name, value in match.groupdict().items()
            }
            return route, endpoint
        return None

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
