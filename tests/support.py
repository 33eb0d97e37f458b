"""Constants and small helpers the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from starlette.types import ASGIApp

from tollhouse.identity.user_cache import UserCache
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.ledger.models import CreditTransaction
from tollhouse.metering import caches
from tollhouse.metering.rate_limit import rate_limiter_from_url

SERVICE_KEY = "test-service-key-0123456789abcdefghijkl"
SIGNING_SECRET = "test-signing-secret-0123456789abcdefghij"
ADMIN_KEY = "test-admin-key-0123456789abcdefghijklmnop"
JWT_SECRET = "test-jwt-secret-0123456789abcdefghijklmnop"
PEPPER = "test-pepper-0123456789abcdefghijklmnopqrst"

SERVICE = {"X-Service-Key": SERVICE_KEY}


async def resolve(client: httpx.AsyncClient, external_id: str = "user-1", **fields: Any) -> str:
    response = await client.post(
        "/api/v1/users/resolve", json={"external_id": external_id, **fields}, headers=SERVICE
    )
    assert response.status_code == 200, response.text
    return str(response.json()["user_id"])


async def token_pair(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/token", json={"user_id": user}, headers=SERVICE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one envelope, with the expected status and stable code."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert "detail" in body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


def app_of(client: httpx.AsyncClient) -> FastAPI:
    """The app behind an in-process test client."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    return app


async def ledger_rows(client: httpx.AsyncClient, type_: str) -> list[CreditTransaction]:
    """The ledger's rows of one type, oldest first."""
    async with app_of(client).state.database.session() as session:
        rows = await session.scalars(
            select(CreditTransaction)
            .where(CreditTransaction.type == type_)
            .order_by(CreditTransaction.id)
        )
        return list(rows)


def as_user(user: str) -> dict[str, str]:
    """A service-key caller acting for `user`."""
    return {**SERVICE, "X-User-ID": user}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: FastAPI, **options: Any) -> AsyncIterator[str]:
    """`app` under uvicorn on a real loopback port, in this event loop; yields its base URL.
    `options` go to uvicorn.Config (e.g. `lifespan="off"` for an app already started)."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False, **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the app did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def in_thread(app: ASGIApp, name: str, **config: Any) -> Iterator[str]:
    """A local peer: `app` under uvicorn in a daemon thread with its own event loop (so a
    test's loop never stalls it); yields its base URL. `config` goes to uvicorn.Config."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    scheme = "https" if config.get("ssl_certfile") else "http"
    url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **config)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=5)


class PinnedClock:
    """A clock that moves only when a test moves it: 30 s into a minute-long window, so a
    window never rolls over mid-test and Retry-After is exactly 30."""

    def __init__(self, now: float = 4_102_444_830.0) -> None:  # 2100-01-01 00:00:30 UTC
        self.now = now

    def __call__(self) -> float:
        return self.now


async def pin_rate_limit_clock(client: httpx.AsyncClient, clock: PinnedClock) -> None:
    """The app's rate limiter (memory or Redis, as configured) on `clock` instead of the
    wall clock."""
    app = app_of(client)
    settings = app.state.identity.settings
    await app.state.rate_limiter.close()
    app.state.rate_limiter = rate_limiter_from_url(
        settings.redis_url, settings.rate_limit_key_prefix, clock
    )


def pin_caller_cache_clock(client: httpx.AsyncClient, clock: PinnedClock) -> None:
    """The app's per-process caller caches (users, tokens, keys) on `clock`, and our access
    tokens' expiry with them: their window passes when the test says, however slow the
    machine."""
    app = app_of(client)
    identity = app.state.identity
    app.state.identity = dataclasses.replace(
        identity,
        user_cache=UserCache(identity.user_cache.ttl, clock=clock),
        key_cache=TTLCache(identity.key_cache.max_entries, clock=clock),
    )


@contextlib.contextmanager
def pinned_metering_caches(clock: PinnedClock) -> Iterator[None]:
    """The metered path's per-process caches (plans, tier limits, /gw routes) on `clock` for
    the block, the steady clock again after it."""
    caches.use_clock(clock)
    try:
        yield
    finally:
        caches.use_clock(time.monotonic)
