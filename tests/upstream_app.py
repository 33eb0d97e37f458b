"""The upstreams the upstream tests forward to: a small Starlette app run under uvicorn in its
own process (`python -m uvicorn upstream_app:app`), plus a clockchain-like corner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

CLOCKCHAIN_KEY = "clockchain-service-key-0123456789abcdef"
MB = 1024 * 1024
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
MOMENTS = [
    {"path": "/1969/july/20/2017/us/florida/cape-canaveral/apollo-11", "name": "Apollo 11"},
    {"path": "/1969/november/14/1622/us/florida/cape-canaveral/apollo-12", "name": "Apollo 12"},
    {"path": "/-44/march/15/1200/italy/lazio/rome/caesar", "name": "Death of Caesar"},
]


async def fast(_request: Request) -> Response:
    return JSONResponse({"ok": True})


async def upload(request: Request) -> Response:
    """Counts a body as it streams in (never held whole) and how it was framed."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    framing = "content-length" if "content-length" in request.headers else "chunked"
    return JSONResponse({"received": size, "framing": framing})


async def echo(request: Request) -> Response:
    """Records exactly what arrived: method, path, query, every header, the body."""
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
            "body": body.decode(),
        },
        headers={"X-Upstream": "echo", "Connection": "X-Secret-Hop", "X-Secret-Hop": "1"},
    )


async def slow(_request: Request) -> Response:
    await asyncio.sleep(5)
    return JSONResponse({"slow": True})


async def text(_request: Request) -> Response:
    return PlainTextResponse("<html>not json</html>")


async def fail(_request: Request) -> Response:
    return JSONResponse({"error": "boom"}, status_code=500)


async def missing(_request: Request) -> Response:
    return JSONResponse({"detail": "Node not found"}, status_code=404)


# Each /sse stream holds its second event until POST /sse/release (at most SSE_HOLD_SECONDS):
# its first event reaches a client through a proxy only if the proxy streams.
SSE_HOLD_SECONDS = 10
_held_streams: list[asyncio.Event] = []


async def sse(_request: Request) -> Response:
    released = asyncio.Event()
    _held_streams.append(released)

    async def events() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        try:
            await asyncio.wait_for(released.wait(), SSE_HOLD_SECONDS)
            yield b"data: second, released\n\n"
        except TimeoutError:
            yield b"data: second, never released\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def sse_release(_request: Request) -> Response:
    for released in _held_streams:
        released.set()
    count = len(_held_streams)
    _held_streams.clear()
    return JSONResponse({"released": count})


async def big(request: Request) -> Response:
    size = int(request.query_params.get("mb", "50"))
    chunk = b"x" * MB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size):
            yield chunk

    return StreamingResponse(
        body(), media_type="application/octet-stream", headers={"Content-Length": str(size * MB)}
    )


async def drop(_request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"partial": "'
        await asyncio.sleep(0.1)
        raise RuntimeError("the upstream dies mid-body")

    return StreamingResponse(body(), media_type="application/json")


def _clockchain_auth(request: Request) -> Response | None:
    if request.headers.get("x-service-key") != CLOCKCHAIN_KEY:
        return JSONResponse({"detail": "Invalid service key"}, status_code=403)
    return None


async def search(request: Request) -> Response:
    if (refused := _clockchain_auth(request)) is not None:
        return refused
    q = request.query_params.get("q", "").lower()
    found = [{**m, "score": 1.0} for m in MOMENTS if q and q in m["name"].lower()]
    return JSONResponse(found)


async def ingest(request: Request) -> Response:
    if (refused := _clockchain_auth(request)) is not None:
        return refused
    body = await request.json()
    return JSONResponse({"ingested_nodes": len(body.get("nodes", [])), "ingested_edges": 0})


async def index(request: Request) -> Response:
    if (refused := _clockchain_auth(request)) is not None:
        return refused
    body = await request.json()
    return JSONResponse({"path": body["path"], "status": "indexed"})


async def scripted(request: Request) -> Response:
    """Answers as the query says, recording what arrived (raw path included):
    `?status=429`, `?location=…` (with a 3xx status), `?allow=GET` (with 405), `?vary=…`,
    `?empty=1` (no body), `?text=1` (not JSON)."""
    params = request.query_params
    status = int(params.get("status", "200"))
    headers = {"X-Upstream": "scripted"}
    if "location" in params:
        headers["Location"] = params["location"]
    if "allow" in params:
        headers["Allow"] = params["allow"]
    if "vary" in params:
        headers["Vary"] = params["vary"]
    if params.get("empty") or status in (204, 304) or request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if params.get("text"):
        return PlainTextResponse("<html>not json</html>", status_code=status, headers=headers)
    body = {
        "method": request.method,
        "path": request.url.path,
        "raw_path": request.scope["raw_path"].decode("latin-1"),
        "query": request.url.query,
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
    }
    return JSONResponse(body, status_code=status, headers=headers)


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "healthy", "service": "timepoint-clockchain"})


# Every request's raw path, in arrival order: GET /_received reads, DELETE /_received clears.
RECEIVED: list[str] = []


class Recorder:
    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/_received":
            RECEIVED.append(scope["raw_path"].decode("latin-1"))
        await self.inner(scope, receive, send)


async def received(request: Request) -> Response:
    if request.method == "DELETE":
        RECEIVED.clear()
    return JSONResponse(RECEIVED)


app = Starlette(
    middleware=[Middleware(Recorder)],
    routes=[
        Route("/_received", received, methods=["GET", "DELETE"]),
        Route("/fast", fast),
        Route("/echo/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/slow", slow),
        Route("/text", text),
        Route("/fail", fail, methods=["GET", "POST"]),
        Route("/sse", sse),
        Route("/sse/release", sse_release, methods=["POST"]),
        Route("/big", big),
        Route("/upload", upload, methods=["POST"]),
        Route("/drop", drop),
        Route("/health", health),
        Route("/api/v1/search", search),
        Route("/api/v1/text", text),
        Route("/api/v1/graph/neighbors/{rest:path}", missing),
        Route("/api/v1/ingest/subgraph", ingest, methods=["POST"]),
        Route("/api/v1/ingest/broken", fail, methods=["POST"]),
        Route("/api/v1/index", index, methods=["POST"]),
        Route("/api/v1/{rest:path}", scripted, methods=ALL_METHODS),
        Route("/scripted/{rest:path}", scripted, methods=ALL_METHODS),
    ],
)
