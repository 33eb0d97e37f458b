"""The apps bench/proxy.py runs under uvicorn, each in its own process: the upstream and the
bare Starlette + aiohttp forwarder. Kept apart from the bench so their processes import only
Starlette and aiohttp (importing Tollhouse took ~30 s on a loaded machine)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PING_PATH = "/ping"
UPSTREAM_ENV = "BENCH_UPSTREAM_URL"


async def _ping(_request: Request) -> Response:
    return JSONResponse({"pong": True, "service": "bench-upstream"})


upstream = Starlette(routes=[Route(PING_PATH, _ping)])


@asynccontextmanager
async def _session(app: Starlette) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(os.environ[UPSTREAM_ENV]) as session:
        app.state.session = session
        yield


async def _forward(request: Request) -> Response:
    session: aiohttp.ClientSession = request.app.state.session
    async with session.get(request.url.path) as answer:
        body = await answer.read()
        media_type = answer.headers.get("content-type")
    return Response(body, status_code=answer.status, media_type=media_type)


forwarder = Starlette(routes=[Route("/{path:path}", _forward)], lifespan=_session)
