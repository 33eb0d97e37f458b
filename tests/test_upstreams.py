"""Upstreams through real sockets: Tollhouse under uvicorn (in the test's event loop) forwarding
to real upstream processes on loopback (`upstream_app.py`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import uvicorn
from sqlalchemy import insert, select
from starlette.requests import Request

from conftest import make_settings
from platform_fixtures import Keys, database, end_user, new_project
from support import (
    ADMIN_KEY,
    SERVICE,
    ClientFactory,
    PinnedClock,
    as_user,
    assert_error,
    free_port,
    pinned_metering_caches,
    resolve,
    token_pair,
)
from tollhouse import wiring
from tollhouse.app import create_app
from tollhouse.config import ConfigError
from tollhouse.kit import proxy_paths
from tollhouse.kit.forwarding import Upstream, UpstreamConfig, UpstreamUnavailable, prepare
from tollhouse.kit.ssrf import PublicOnlyConnector, PublicOnlyResolver
from tollhouse.upstreams import platform
from tollhouse.upstreams.models import UpstreamRoute
from upstream_app import CLOCKCHAIN_KEY, MB

pytestmark = pytest.mark.anyio

CONSOLE = "/console/api/v1"
SVC_SECRET = "svc-injected-secret-0123456789"


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    """The upstream app in its own process."""
    port = free_port()
    app_dir = str(Path(__file__).parent)
    command = [sys.executable, "-m", "uvicorn", "upstream_app:app", "--app-dir", app_dir]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command)  # noqa: S603 - our own interpreter and test app
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the upstream app did not start") from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@dataclass
class Served:
    """Tollhouse on a real port (`http`), and an in-process client for the fixtures' helpers."""

    http: httpx.AsyncClient
    setup: httpx.AsyncClient


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(database_url: str, tmp_path: Path, upstream_url: str) -> AsyncIterator[Serve]:
    running: list[tuple[uvicorn.Server, asyncio.Task[None], Served]] = []

    async def factory(**overrides: Any) -> Served:
        values: dict[str, Any] = {
            "clockchain_service_url": upstream_url,
            "clockchain_service_key": CLOCKCHAIN_KEY,
            "upstreams": [
                {
                    "name": "svc",
                    "url": upstream_url,
                    "inject_headers": {"X-Service-Key": SVC_SECRET},
                    "methods": ["GET", "POST"],
                },
                {"name": "dead", "url": f"http://127.0.0.1:{free_port()}"},
            ],
            **overrides,
        }
        app = create_app(make_settings(database_url, tmp_path, **values))
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), "tollhouse did not start"
            await asyncio.sleep(0.01)
        served = Served(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test"),
        )
        running.append((server, task, served))
        return served

    yield factory
    for server, task, served in reversed(running):
        await served.http.aclose()
        await served.setup.aclose()
        server.should_exit = True
        await task


@pytest.fixture
async def served(serve: Serve) -> Served:
    return await serve()


async def balance(served: Served, user: str) -> int:
    response = await served.http.get("/api/v1/credits/balance", headers=as_user(user))
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


# --- the engine: what is injected, what is stripped ------------------------------------------


async def test_the_upstream_receives_injected_headers_and_none_of_the_callers(
    served: Served,
) -> None:
    user = await resolve(served.setup, "rec-1", email="rec@example.com")
    response = await served.http.post(
        "/api/v1/upstreams/svc/echo/a/b?x=1&y=two",
        content=b'{"hello": "world"}',
        headers={
            **as_user(user),
            "Content-Type": "application/json",
            "Authorization": "Bearer sk_test_not-for-upstream",
            "X-Publishable-Key": "pk_test_not-for-upstream",
            "X-Clerk-Token": "end-user-token",
            "Cookie": "tollhouse_session=abc",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "hop-value",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eA==",
            "X-Forwarded-For": "203.0.113.9",
            "X-Custom": "kept",
        },
    )
    assert response.status_code == 200, response.text
    seen = response.json()
    headers: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/a/b"
    assert seen["query"] == "x=1&y=two"
    assert seen["body"] == '{"hello": "world"}'
    assert headers["x-service-key"] == [SVC_SECRET]
    assert headers["x-user-id"] == [user]
    assert headers["x-user-email"] == ["rec@example.com"]
    assert headers["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"][0].startswith("127.0.0.1:")
    assert headers["x-request-id"] == [response.headers["x-request-id"]]
    assert headers["x-custom"] == ["kept"]
    for absent in (
        "authorization",
        "x-publishable-key",
        "x-clerk-token",
        "cookie",
        "x-hop",
        "keep-alive",
        "proxy-authorization",
    ):
        assert absent not in headers, absent
    assert SERVICE["X-Service-Key"] not in response.text
    # And on the way back: the upstream's headers, minus those its Connection names.
    assert response.headers["x-upstream"] == "echo"
    assert "x-secret-hop" not in response.headers


async def test_methods_and_authentication_are_enforced(served: Served) -> None:
    # Not an authenticated Gateway caller.
    assert_error(
        await served.http.get("/api/v1/upstreams/svc/fast"), 401, "authentication_required"
    )
    # A method the upstream's policy does not list: 404 without reaching it.
    response = await served.http.delete("/api/v1/upstreams/svc/echo/x", headers=SERVICE)
    assert_error(response, 404, "upstream_route_not_found")
    assert (
        await served.http.get("/api/v1/upstreams/nope/fast", headers=SERVICE)
    ).status_code == 404


async def test_failure_modes_answer_in_our_envelope(serve: Serve) -> None:
    served = await serve(upstream_read_timeout_seconds=0.5)
    fast = await served.http.get("/api/v1/upstreams/svc/fast", headers=SERVICE)
    assert fast.status_code == 200
    assert fast.json() == {"ok": True}
    assert_error(
        await served.http.get("/api/v1/upstreams/dead/fast", headers=SERVICE),
        503,
        "upstream_unavailable",
    )
    assert_error(
        await served.http.get("/api/v1/upstreams/svc/slow", headers=SERVICE),
        504,
        "upstream_timeout",
    )
    # The upstream's own errors pass through unchanged.
    failed = await served.http.get("/api/v1/upstreams/svc/fail", headers=SERVICE)
    assert (failed.status_code, failed.json()) == (500, {"error": "boom"})
    # Not JSON is fine where JSON is not promised, a 502 where it is (the clockchain).
    text = await served.http.get("/api/v1/upstreams/svc/text", headers=SERVICE)
    assert (text.status_code, text.text) == (200, "<html>not json</html>")
    assert_error(
        await served.http.get("/api/v1/clockchain/today?text=1", headers=SERVICE),
        502,
        "upstream_malformed",
    )


async def test_sse_streams_through_event_by_event(served: Served, upstream_url: str) -> None:
    async with served.http.stream("GET", "/api/v1/upstreams/svc/sse", headers=SERVICE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.aiter_raw()
        first = await chunks.__anext__()
        assert first == b"data: first\n\n"
        # The upstream holds its second event until now: the first came through on its own.
        async with httpx.AsyncClient() as upstream:
            released = await upstream.post(f"{upstream_url}/sse/release")
        assert released.json() == {"released": 1}
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"data: second, released\n\n"


def _peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


async def test_a_50_mb_body_streams_with_flat_memory(served: Served) -> None:
    _reset_peak_rss()
    before = _peak_rss_kb()
    received = 0
    async with served.http.stream(
        "GET", "/api/v1/upstreams/svc/big?mb=50", headers=SERVICE
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(50 * MB)
        async for chunk in response.aiter_raw():
            received += len(chunk)
    assert received == 50 * MB
    growth_mb = (_peak_rss_kb() - before) / 1024
    assert growth_mb < 20, f"peak RSS grew by {growth_mb:.1f} MB"


async def test_a_50_mb_upload_streams_through_with_flat_memory(serve: Serve) -> None:
    """A write larger than the engine buffers goes upstream chunk by chunk, its length kept
    (the body limit raised for it: 1 MiB by default)."""
    served = await serve(max_body_bytes=64 * MB)

    async def body() -> AsyncIterator[bytes]:
        chunk = b"y" * MB
        for _ in range(50):
            yield chunk

    _reset_peak_rss()
    before = _peak_rss_kb()
    response = await served.http.post(
        "/api/v1/upstreams/svc/upload",
        content=body(),
        headers={**SERVICE, "Content-Length": str(50 * MB)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 50 * MB, "framing": "content-length"}
    growth_mb = (_peak_rss_kb() - before) / 1024
    assert growth_mb < 20, f"peak RSS grew by {growth_mb:.1f} MB"


# --- the clockchain ----------------------------------------------------------------------------


async def test_clockchain_reads_are_free_and_pass_through(served: Served) -> None:
    user = await resolve(served.setup, "cc-reader")
    before = await balance(served, user)
    response = await served.http.get("/api/v1/clockchain/search?q=apollo", headers=as_user(user))
    assert response.status_code == 200, response.text
    assert [m["name"] for m in response.json()] == ["Apollo 11", "Apollo 12"]
    missing = await served.http.get(
        "/api/v1/clockchain/graph/neighbors/1969/x", headers=as_user(user)
    )
    assert (missing.status_code, missing.json()) == (404, {"detail": "Node not found"})
    assert await balance(served, user) == before
    deep = (await served.http.get("/health/deep")).json()
    assert deep["upstreams"] == {"clockchain": True}


async def test_clockchain_writes_hold_and_capture_or_release(served: Served) -> None:
    user = await resolve(served.setup, "cc-writer")
    before = await balance(served, user)
    ingest = await served.http.post(
        "/api/v1/clockchain/ingest/subgraph",
        json={"nodes": [{"id": "a"}, {"id": "b"}], "edges": []},
        headers=as_user(user),
    )
    assert ingest.status_code == 200, ingest.text
    assert ingest.json()["ingested_nodes"] == 2
    assert await balance(served, user) == before - 1
    index = await served.http.post(
        "/api/v1/clockchain/index", json={"path": "/1969/x"}, headers=as_user(user)
    )
    assert (index.status_code, index.json()["status"]) == (200, "indexed")
    assert await balance(served, user) == before - 2
    # The upstream fails: its answer passes through, the hold is released.
    broken = await served.http.post(
        "/api/v1/clockchain/ingest/tdf?status=500", json=[], headers=as_user(user)
    )
    assert broken.status_code == 500
    assert await balance(served, user) == before - 2


async def test_clockchain_unreachable_releases_and_unset_says_so(serve: Serve) -> None:
    dead = await serve(clockchain_service_url=f"http://127.0.0.1:{free_port()}")
    user = await resolve(dead.setup, "cc-dead")
    before = await balance(dead, user)
    response = await dead.http.post(
        "/api/v1/clockchain/ingest/subgraph", json={"nodes": []}, headers=as_user(user)
    )
    assert_error(response, 503, "upstream_unavailable")
    assert await balance(dead, user) == before
    deep = await dead.http.get("/health/deep")
    assert deep.json()["upstreams"] == {"clockchain": False}

    off = await serve(clockchain_enabled=False)
    response = await off.http.get("/api/v1/clockchain/search?q=apollo", headers=SERVICE)
    body = assert_error(response, 503, "upstream_not_configured")
    assert "CLOCKCHAIN_ENABLED=false" in body["message"]
    assert "upstreams" not in (await off.http.get("/health/deep")).json()
    unset = await serve(clockchain_service_url=None)
    response = await unset.http.post(
        "/api/v1/clockchain/ingest/subgraph", json={"nodes": []}, headers=as_user(user)
    )
    body = assert_error(response, 503, "upstream_not_configured")
    assert "set CLOCKCHAIN_SERVICE_URL" in body["message"]


# --- developers' APIs under /gw ----------------------------------------------------------------


async def developer_project(served: Served) -> tuple[dict[str, str], Keys]:
    client = served.http
    signup = await client.post(
        f"{CONSOLE}/auth/signup",
        json={"email": "dev@example.com", "password": "correct horse battery"},
    )
    assert signup.status_code == 201, signup.text
    client.cookies.clear()
    auth = {"Cookie": f"tollhouse_session={signup.json()['token']}"}
    created = await client.post(
        f"{CONSOLE}/projects", json={"name": "Acme", "type": "saas"}, headers=auth
    )
    assert created.status_code == 201, created.text
    body = created.json()
    project_id = body["project"]["id"]
    tier = {"name": "free", "display_name": "Free", "limit": 3}
    response = await client.post(f"{CONSOLE}/projects/{project_id}/tiers", json=tier, headers=auth)
    assert response.status_code == 201, response.text
    keys = Keys(project_id, "", body["publishable_key"], body["secret_key"], "", "")
    return auth, keys


async def register(
    served: Served, auth: dict[str, str], project_id: str, **route: Any
) -> httpx.Response:
    return await served.http.post(
        f"{CONSOLE}/projects/{project_id}/upstreams", json=route, headers=auth
    )


async def usage(served: Served, headers: dict[str, str]) -> int:
    response = await served.http.get("/api/usage", headers=headers)
    assert response.status_code == 200, response.text
    return int(response.json()["usageCount"])


async def test_gw_meters_forwards_and_refunds(serve: Serve, upstream_url: str) -> None:
    served = await serve(allow_private_upstreams=True)
    auth, keys = await developer_project(served)
    route = await register(
        served,
        auth,
        keys.project_id,
        path_prefix="/api/",
        upstream_url=upstream_url,
        methods=["get", "POST"],
    )
    assert route.status_code == 201, route.text
    assert route.json()["methods"] == ["GET", "POST"]
    listed = await served.http.get(f"{CONSOLE}/projects/{keys.project_id}/upstreams", headers=auth)
    assert [r["path_prefix"] for r in listed.json()] == ["api"]
    user = await end_user(served.http, keys, "gw@example.com")

    ok = await served.http.get(f"/gw/{keys.project_id}/api/echo/x?q=1", headers=user)
    assert ok.status_code == 200, ok.text
    seen = {name.lower(): value for name, value in ok.json()["headers"]}
    assert ok.json()["path"] == "/echo/x"
    assert "x-user-id" in seen
    assert "x-clerk-token" not in seen
    assert "x-publishable-key" not in seen
    assert await usage(served, user) == 1

    # The upstream fails (5xx, or drops the connection mid-body): the unit is given back.
    failed = await served.http.get(f"/gw/{keys.project_id}/api/fail", headers=user)
    assert failed.status_code == 500
    assert await usage(served, user) == 1
    with pytest.raises(httpx.RemoteProtocolError):
        await served.http.get(f"/gw/{keys.project_id}/api/drop", headers=user)
    for _ in range(400):  # given back in the background: a bounded wait
        if await usage(served, user) == 1:
            break
        await asyncio.sleep(0.05)
    assert await usage(served, user) == 1

    # No route, a method the route does not take, another project: nothing is counted.
    assert_error(
        await served.http.get(f"/gw/{keys.project_id}/other/x", headers=user),
        404,
        "upstream_route_not_found",
    )
    assert_error(
        await served.http.delete(f"/gw/{keys.project_id}/api/echo/x", headers=user),
        405,
        "method_not_allowed",
    )
    _, other = await developer_project_of_another(served)
    assert_error(
        await served.http.get(f"/gw/{other.project_id}/api/fast", headers=user),
        404,
        "upstream_route_not_found",
    )
    assert await usage(served, user) == 1

    # The quota: a limit of 3.
    for _ in range(2):
        assert (
            await served.http.get(f"/gw/{keys.project_id}/api/fast", headers=user)
        ).status_code == 200
    assert_error(
        await served.http.get(f"/gw/{keys.project_id}/api/fast", headers=user),
        403,
        "tier_limit_reached",
    )
    assert await usage(served, user) == 3
    # Without an end-user token: refused before anything is forwarded.
    assert_error(
        await served.http.get(f"/gw/{keys.project_id}/api/fast", headers=keys.publishable),
        401,
        "invalid_end_user_token",
    )

    route_id = route.json()["id"]
    deleted = await served.http.delete(
        f"{CONSOLE}/projects/{keys.project_id}/upstreams/{route_id}", headers=auth
    )
    assert deleted.status_code == 204
    assert_error(
        await served.http.get(f"/gw/{keys.project_id}/api/fast", headers=user),
        404,
        "upstream_route_not_found",
    )


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_gw_and_the_platform_api_share_one_count(
    serve: Serve, upstream_url: str, backend: str
) -> None:
    """With Redis, `POST /api/data` counted in Redis while `/gw` counted in the database, so
    a user of a 3-call tier got 3 of each. Both now go through the one meter."""
    overrides: dict[str, Any] = {"allow_private_upstreams": True}
    if backend == "redis":
        redis_url = os.environ.get("TOLLHOUSE_TEST_REDIS_URL")
        if not redis_url:
            pytest.skip("Redis meter skipped: TOLLHOUSE_TEST_REDIS_URL is not set")
        overrides |= {"redis_url": redis_url, "metering_key_prefix": f"t:{uuid.uuid4().hex}:"}
    served = await serve(**overrides)
    auth, keys = await developer_project(served)
    route = await register(
        served, auth, keys.project_id, path_prefix="api", upstream_url=upstream_url, methods=["GET"]
    )
    assert route.status_code == 201, route.text
    user = await end_user(served.http, keys, "shared@example.com")
    for _ in range(2):
        assert (await served.http.post("/api/data", headers=user)).status_code == 200
    assert (
        await served.http.get(f"/gw/{keys.project_id}/api/fast", headers=user)
    ).status_code == 200
    assert_error(
        await served.http.get(f"/gw/{keys.project_id}/api/fast", headers=user),
        403,
        "tier_limit_reached",
    )
    assert_error(await served.http.post("/api/data", headers=user), 403, "tier_limit_reached")
    assert await usage(served, user) == 3


async def developer_project_of_another(served: Served) -> tuple[dict[str, str], Keys]:
    signup = await served.http.post(
        f"{CONSOLE}/auth/signup",
        json={"email": "other@example.com", "password": "correct horse battery"},
    )
    assert signup.status_code == 201, signup.text
    served.http.cookies.clear()
    auth = {"Cookie": f"tollhouse_session={signup.json()['token']}"}
    created = await served.http.post(
        f"{CONSOLE}/projects", json={"name": "Other", "type": "saas"}, headers=auth
    )
    body = created.json()
    return auth, Keys(
        body["project"]["id"], "", body["publishable_key"], body["secret_key"], "", ""
    )


async def test_gw_registration_refuses_private_urls(served: Served, upstream_url: str) -> None:
    auth, keys = await developer_project(served)
    for url in (upstream_url, "https://127.0.0.1/x", "https://10.1.2.3", "ftp://example.com"):
        response = await register(served, auth, keys.project_id, path_prefix="x", upstream_url=url)
        assert_error(response, 400, "url_not_allowed")
    response = await register(
        served, auth, keys.project_id, path_prefix="x", upstream_url="https://x", methods=["BREW"]
    )
    assert_error(response, 422, "validation_error")
    _, other = await developer_project_of_another(served)
    response = await register(
        served, auth, other.project_id, path_prefix="x", upstream_url="https://example.com"
    )
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "attempts"), [("GET", 2), ("HEAD", 2), ("POST", 1), ("PUT", 1)])
async def test_only_idempotent_methods_are_retried(method: str, attempts: int) -> None:
    """A refused connection is tried again for GET/HEAD/OPTIONS only: a write is never sent
    twice (the original retried writes)."""
    port = free_port()  # nothing listens there: every connection is refused
    sent: list[str] = []

    async def resolve(host: str, _port: int) -> list[str]:
        sent.append(method)  # asked once per connection attempt (aiohttp's DNS cache is off)
        return ["127.0.0.1"]

    def connector(**options: Any) -> aiohttp.TCPConnector:
        resolver = PublicOnlyResolver(resolve=resolve, is_public=lambda _address: True)
        return PublicOnlyConnector(resolver=resolver, **options)

    upstream = Upstream(
        UpstreamConfig("flaky", f"http://flaky.internal:{port}"), connector=connector
    )
    scope = {
        "type": "http",
        "method": method,
        "path": "/things",
        "raw_path": b"/things",
        "query_string": b"",
        "headers": [(b"host", b"tollhouse.test")],
        "client": ("127.0.0.1", 5000),
        "server": ("tollhouse.test", 80),
        "scheme": "http",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    request = Request(scope, receive)
    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.forward(request, prepare(request, "/things"))
    finally:
        await upstream.close()
    assert sent == [method] * attempts


# --- a project's /gw routes, cached per process for CALLER_CACHE_SECONDS ------------------------


async def test_gw_routes_are_read_again_within_the_cache_window(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    clock = PinnedClock()
    with pinned_metering_caches(clock):
        keys = await new_project(client, tiers=[])
        db = database(client)

        async def match(cache_seconds: float) -> platform.GatewayRoute:
            async with db.session() as session:
                return await platform.match_route(
                    session, keys.project_id, proxy_paths.parse(b"/api/x"), "GET", cache_seconds
                )

        with pytest.raises(platform.NoUpstreamRoute):
            await match(0.3)  # "no routes" is remembered too
        # Another process registers a route: straight through the engine.
        async with db.engine.begin() as connection:
            await connection.execute(
                insert(UpstreamRoute).values(
                    project_id=keys.project_id,
                    path_prefix="api",
                    upstream_url="https://api.example.com/v1/",
                    methods="GET",
                    units=2,
                )
            )
        with pytest.raises(platform.NoUpstreamRoute):
            await match(0.3)  # at most the window
        assert (await match(0)).path_prefix == "api"  # no cache: seen at once
        clock.now += 0.35
        route = await match(0.3)
        assert (route.path_prefix, route.units, route.base_path) == ("api", 2, "/v1")
        # This process deletes it (the console's path): seen at once, cache or not.
        async with db.session() as session:
            route_id = await session.scalar(
                select(UpstreamRoute.id).where(UpstreamRoute.project_id == keys.project_id)
            )
            assert route_id is not None
            await platform.delete_route(session, keys.project_id, route_id)
        with pytest.raises(platform.NoUpstreamRoute):
            await match(0.3)


# --- issue 12: one normalised path, route policies, charges that follow the answer ------------

WRITER_TOKEN = "clockchain-writer-token-0123456789"
PAID_ROUTES = [
    {"methods": ["GET"], "path": "scripted/public/**", "access": "anyone", "credentials": False},
    {"methods": ["GET"], "path": "scripted/admin/**", "access": "admin"},
    {"methods": ["GET"], "path": "scripted/closed/**", "access": "none"},
    {"methods": ["GET", "POST"], "path": "scripted/kept-on-307/**", "price": 2,
     "charge_on": "2xx,307"},
    {"methods": ["GET", "POST"], "path": "scripted/**", "price": 2},
    {"methods": ["GET"], "path": "slow", "price": 2},
]  # fmt: skip


async def received(upstream_url: str, *, clear: bool = False) -> list[str]:
    """The raw paths the upstream app received (DELETE clears them)."""
    async with httpx.AsyncClient() as client:
        response = await client.request("DELETE" if clear else "GET", f"{upstream_url}/_received")
    return list(response.json())


async def raw(
    served: Served, method: str, target: str, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    """A request whose path goes on the wire exactly as written (httpx would normalise it)."""
    return await served.http.request(
        method, target, headers=headers, extensions={"target": target.encode()}, **kwargs
    )


async def history(served: Served, user: str) -> list[tuple[int, str]]:
    response = await served.http.get("/api/v1/credits/history", headers=as_user(user))
    assert response.status_code == 200, response.text
    return [(row["amount"], row["type"]) for row in response.json()]


ATTACKS = [
    "//index",
    "/./index",
    "/x/..%2Findex",
    "/x/../index",
    "/x/%2e%2e/index",
    "/x/.%2E/index",
    "/%2e/index",
    "/..%2F..%2Fhealth",
    "/..%2f..%2fopenapi.json",
    "/search%3Fq=apollo",
    "/index%23x",
    "/x%5Cindex",
    "/x%2Findex",
    "/index%00",
    "/x/%zz",
]


@pytest.mark.parametrize("door", ["clockchain", "operator", "gw"])
async def test_paths_are_normalised_once_and_unclean_ones_refused_before_charging(
    serve: Serve, upstream_url: str, door: str
) -> None:
    """`//index`, `./index`, `x/..%2Findex` reached clockchain's paid index unpaid; `..%2F`
    left /api/v1 with the service key attached; `%3F` became a query. The same engine serves
    the three front doors: each refuses them with 400 and the upstream receives nothing."""
    served = await serve(
        allow_private_upstreams=True,
        upstreams=[{"name": "paid", "url": upstream_url, "routes": PAID_ROUTES}],
    )
    if door == "gw":
        auth, keys = await developer_project(served)
        route = await register(
            served, auth, keys.project_id, path_prefix="api",
            upstream_url=f"{upstream_url}/scripted", methods=["GET", "POST"],
        )  # fmt: skip
        assert route.status_code == 201, route.text
        headers = await end_user(served.http, keys, "paths@example.com")
        base, seen_base = f"/gw/{keys.project_id}/api", "/scripted"

        async def spent() -> int:
            return await usage(served, headers)
    else:
        user = await resolve(served.setup, f"paths-{door}")
        headers = as_user(user)
        base, seen_base = (
            ("/api/v1/clockchain", "/api/v1")
            if door == "clockchain"
            else ("/api/v1/upstreams/paid/scripted", "/scripted")
        )

        async def spent() -> int:
            return -await balance(served, user)

    before = await spent()
    await received(upstream_url, clear=True)
    for attack in ATTACKS:
        response = await raw(served, "POST", base + attack, headers, json={"nodes": []})
        # A NUL is refused by the app-wide input guard before any route (kit/input_guards).
        if "%00" in attack:
            assert_error(response, 422, "validation_error")
        else:
            assert_error(response, 400, "invalid_path")
    assert await received(upstream_url) == []
    assert await spent() == before

    # A clean path reaches the upstream as the one canonical form we decided on.
    ok = await raw(served, "GET", base + "/browse/%41pollo%20%C3%A9/", headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["path"] == f"{seen_base}/browse/Apollo é/"
    assert ok.json()["raw_path"] == f"{seen_base}/browse/Apollo%20%C3%A9/"
    assert await received(upstream_url) == [f"{seen_base}/browse/Apollo%20%C3%A9/"]
    # Browsing the clockchain is free; the other doors charge their price.
    assert await spent() == before + {"clockchain": 0, "operator": 2, "gw": 1}[door]


async def test_a_charge_is_kept_only_for_the_answers_its_rule_pays_for(
    serve: Serve, upstream_url: str
) -> None:
    """A clockchain 400 or 429 cost a credit; now only a 2xx does (or what a route's
    `charge_on` lists). 4xx, redirects, timeouts and our own refusals release the hold."""
    served = await serve(
        upstream_read_timeout_seconds=0.5,
        upstreams=[{"name": "paid", "url": upstream_url, "routes": PAID_ROUTES}],
    )
    user = await resolve(served.setup, "charges")
    start = await balance(served, user)
    ingest = "/api/v1/clockchain/ingest/tdf"
    for status in (400, 401, 404, 422, 429, 307):
        response = await served.http.post(
            f"{ingest}?status={status}&location=/api/v1/x", json=[], headers=as_user(user)
        )
        assert response.status_code == status, response.text
    timed_out = await served.http.get("/api/v1/upstreams/paid/slow", headers=as_user(user))
    assert_error(timed_out, 504, "upstream_timeout")
    elsewhere = await served.http.get(
        "/api/v1/upstreams/paid/scripted/x?status=302&location=https://evil.example/x",
        headers=as_user(user),
    )
    assert_error(elsewhere, 502, "upstream_redirect_refused")
    assert await balance(served, user) == start
    # Every hold was taken and given back: a charge and its refund per call, nothing kept.
    rows = await history(served, user)
    assert sorted(rows[:16]) == sorted([(-1, "api_spend"), (1, "refund")] * 6
                                       + [(-2, "api_spend"), (2, "refund")] * 2)  # fmt: skip

    ok = await served.http.post(ingest, json=[], headers=as_user(user))
    assert ok.status_code == 200
    # A route whose rule also pays for a 307 keeps it.
    kept = await served.http.get(
        "/api/v1/upstreams/paid/scripted/kept-on-307/x?status=307&location=/scripted/y",
        headers=as_user(user),
    )
    assert kept.status_code == 307
    assert kept.headers["location"] == "/api/v1/upstreams/paid/scripted/y"
    assert await balance(served, user) == start - 3
    assert (await history(served, user))[:2] == [(-2, "api_spend"), (-1, "api_spend")]


async def test_gw_units_follow_the_charge_rule(serve: Serve, upstream_url: str) -> None:
    served = await serve(allow_private_upstreams=True)
    auth, keys = await developer_project(served)
    for prefix, charge_on in (("api", None), ("cached", "2xx,304")):
        body: dict[str, Any] = {"charge_on": charge_on} if charge_on else {}
        route = await register(
            served, auth, keys.project_id, path_prefix=prefix,
            upstream_url=f"{upstream_url}/scripted", methods=["GET", "HEAD"], **body,
        )  # fmt: skip
        assert route.status_code == 201, route.text
        assert route.json()["charge_on"] == (charge_on or "2xx")
    bad = await register(
        served, auth, keys.project_id, path_prefix="x", upstream_url=upstream_url, charge_on="ok"
    )
    assert_error(bad, 422, "validation_error")
    dotted = await register(
        served, auth, keys.project_id, path_prefix="a/../b", upstream_url=upstream_url
    )
    assert_error(dotted, 422, "validation_error")
    user = await end_user(served.http, keys, "units@example.com")
    gw = f"/gw/{keys.project_id}"
    for status in (400, 404, 429, 304):
        response = await served.http.get(f"{gw}/api/x?status={status}", headers=user)
        assert response.status_code == status
    assert await usage(served, user) == 0
    assert (await served.http.get(f"{gw}/cached/x?status=304", headers=user)).status_code == 304
    assert (await served.http.head(f"{gw}/api/x", headers=user)).status_code == 200
    assert await usage(served, user) == 2


async def test_relay_metering_is_a_deployment_choice_and_self_metering_services_pay_once(
    serve: Serve,
) -> None:
    """Service key + X-User-ID spends the user's credits (the memo's relay) unless the
    deployment says relays meter for themselves (RELAY_METERED=false); a trusted service
    sending `X-Gateway-Metered: true` is not charged twice; a user's own header is ignored."""
    served = await serve()
    user = await resolve(served.setup, "relay")
    start = await balance(served, user)
    ingest = "/api/v1/clockchain/ingest/subgraph"
    body = {"nodes": [], "edges": []}
    assert (await served.http.post(ingest, json=body, headers=as_user(user))).status_code == 200
    assert await balance(served, user) == start - 1
    self_metered = {**as_user(user), "X-Gateway-Metered": "true"}
    assert (await served.http.post(ingest, json=body, headers=self_metered)).status_code == 200
    assert await balance(served, user) == start - 1
    token = (await token_pair(served.setup, user))["access_token"]
    as_bearer = {"Authorization": f"Bearer {token}", "X-Gateway-Metered": "true"}
    assert (await served.http.post(ingest, json=body, headers=as_bearer)).status_code == 200
    assert await balance(served, user) == start - 2

    unmetered = await serve(relay_metered=False)
    user = await resolve(unmetered.setup, "relay-2")
    start = await balance(unmetered, user)
    assert (await unmetered.http.post(ingest, json=body, headers=as_user(user))).status_code == 200
    assert await balance(unmetered, user) == start
    assert await history(unmetered, user) == [(50, "signup_bonus")]


def _headers_seen(response: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


async def test_the_clockchain_serves_only_its_policy(serve: Serve, upstream_url: str) -> None:
    """Every clockchain route was open to every user with our key; administrative ones now
    answer 404 without reaching it, moments go as anonymous (its private ones stay private),
    writes carry the configured writer token and the caller's identity, never its own
    credentials."""
    served = await serve(clockchain_writer_token=WRITER_TOKEN)
    user = await resolve(served.setup, "policy", email="policy@example.com")
    start = await balance(served, user)
    cc = "/api/v1/clockchain"
    await received(upstream_url, clear=True)
    for method, path in (
        ("POST", "agents/register"),
        ("GET", "agents"),
        ("DELETE", "agents/7"),
        ("POST", "moments/1969/x/verify"),
        ("POST", "moments/1969/x/reconcile"),
        ("POST", "moments/1969/x/publish"),
        ("POST", "moments/propose"),
        ("POST", "bulk-generate"),
        ("POST", "generate"),
        ("POST", "expand-once"),
        ("GET", "jobs/1"),
        ("POST", "mcp/"),
        ("PUT", "index"),
    ):
        response = await served.http.request(method, f"{cc}/{path}", headers=as_user(user))
        assert_error(response, 404, "upstream_route_not_found")
    assert await received(upstream_url) == []
    assert await balance(served, user) == start

    # Public reads: anyone, sent without our key.
    moment = await served.http.get(f"{cc}/moments/1969/x")
    assert moment.status_code == 200, moment.text
    assert "x-service-key" not in _headers_seen(moment)
    assert "x-user-id" not in _headers_seen(moment)
    assert (await served.http.get(f"{cc}/stats", headers=as_user(user))).status_code == 200
    # Keyed reads: an authenticated caller, with our key and who they are.
    assert_error(await served.http.get(f"{cc}/today"), 401, "authentication_required")
    today = await served.http.get(
        f"{cc}/today", headers={**as_user(user), "Authorization": "Bearer not-forwarded"}
    )
    seen = _headers_seen(today)
    assert seen["x-service-key"] == [CLOCKCHAIN_KEY]
    assert seen["x-user-id"] == [user]
    assert seen["x-user-email"] == ["policy@example.com"]
    assert len(seen["x-tollhouse-project"]) == 1
    assert "authorization" not in seen
    # Writes: the writer token, never the caller's credentials.
    write = await served.http.post(
        f"{cc}/ingest/tdf", json=[], headers={**as_user(user), "Cookie": "session=x"}
    )
    seen = _headers_seen(write)
    assert seen["authorization"] == [f"Bearer {WRITER_TOKEN}"]
    assert "cookie" not in seen
    assert await balance(served, user) == start - 1


async def test_operator_route_policies_decide_who_may_call(serve: Serve, upstream_url: str) -> None:
    served = await serve(upstreams=[{"name": "paid", "url": upstream_url, "routes": PAID_ROUTES}])
    user = await resolve(served.setup, "operator-policy")
    base = "/api/v1/upstreams/paid/scripted"
    assert (await served.http.get(f"{base}/public/x")).status_code == 200
    assert_error(await served.http.get(f"{base}/x"), 401, "authentication_required")
    assert_error(
        await served.http.get(f"{base}/admin/x", headers=as_user(user)), 403, "admin_key_required"
    )
    admin = await served.http.get(f"{base}/admin/x", headers={"X-Admin-Key": ADMIN_KEY})
    assert admin.status_code == 200
    assert "x-admin-key" not in _headers_seen(admin)
    await received(upstream_url, clear=True)
    closed = await served.http.get(f"{base}/closed/x", headers={"X-Admin-Key": ADMIN_KEY})
    assert_error(closed, 404, "upstream_route_not_found")
    assert await received(upstream_url) == []


async def test_bodyless_answers_pass_through_faithfully(serve: Serve, upstream_url: str) -> None:
    """HEAD was 502 `upstream_malformed` (an empty body is not JSON); 204, 304, redirects and
    405s pass through with their headers, a redirect's Location mapped into our prefix or
    refused, and `Vary` said once."""
    served = await serve(cors_origins=["https://app.example"])
    headers = as_user(await resolve(served.setup, "bodyless"))
    cc = "/api/v1/clockchain"
    head = await served.http.head(f"{cc}/today", headers=headers)
    assert (head.status_code, head.content) == (200, b"")
    for status in (204, 304):
        response = await served.http.get(f"{cc}/today?status={status}", headers=headers)
        assert (response.status_code, response.content) == (status, b"")
    moved = await served.http.get(
        f"{cc}/browse/a?status=307&location=/api/v1/browse/b%20c?x=1&empty=1", headers=headers
    )
    assert moved.status_code == 307
    assert moved.headers["location"] == f"{cc}/browse/b%20c?x=1"
    relative = await served.http.get(
        f"{cc}/browse/a/b?status=307&location=../c&empty=1", headers=headers
    )
    assert relative.headers["location"] == f"{cc}/browse/c"
    for location in ("https://evil.example/api/v1/x", "/health", "//evil.example/x"):
        refused = await served.http.get(
            f"{cc}/browse/a", params={"status": 307, "location": location}, headers=headers
        )
        assert_error(refused, 502, "upstream_redirect_refused")
    not_allowed = await served.http.get(f"{cc}/today?status=405&allow=POST, PUT", headers=headers)
    assert (not_allowed.status_code, not_allowed.headers["allow"]) == (405, "POST, PUT")
    varied = await served.http.get(
        f"{cc}/today?vary=Origin, Accept-Encoding",
        headers={**headers, "Origin": "https://app.example"},
    )
    assert varied.headers.get_list("vary") == ["Origin, Accept-Encoding"]


async def test_gw_refuses_headers_it_cannot_forward_before_counting(
    serve: Serve, upstream_url: str
) -> None:
    """A non-ASCII client header was a 500 after counting the unit, a claim with control
    characters a 503 blaming the upstream: 400, nothing counted."""
    served = await serve(allow_private_upstreams=True)
    auth, keys = await developer_project(served)
    route = await register(
        served, auth, keys.project_id, path_prefix="api", upstream_url=f"{upstream_url}/scripted"
    )
    assert route.status_code == 201, route.text
    gw = f"/gw/{keys.project_id}/api/x"
    user = await end_user(served.http, keys, "bytes@example.com")
    await received(upstream_url, clear=True)
    response = await served.http.get(gw, headers=[*user.items(), (b"X-Note", b"caf\xc3\xa9")])
    body = assert_error(response, 400, "invalid_header_value")
    assert body["detail"] == {"header": "x-note"}
    assert await usage(served, user) == 0
    for email in ("josé@example.com", "a\x01b@example.com"):
        claimed = await end_user(served.http, keys, email)
        body = assert_error(await served.http.get(gw, headers=claimed), 400, "invalid_header_value")
        assert body["detail"] == {"header": "X-User-Email"}
        assert await usage(served, claimed) == 0
    assert await received(upstream_url) == []
    assert (await served.http.get(gw, headers=user)).status_code == 200
    assert await usage(served, user) == 1


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ({"methods": ["GET"], "path": "a/**/b"}, "may only end a pattern"),
        ({"methods": ["GET"], "path": "a/../b"}, "not a clean path"),
        ({"methods": ["BREW"], "path": "a"}, "unknown methods"),
        ({"methods": ["GET"], "path": "a", "price": "no_such_cost"}, "unknown cost key"),
        ({"methods": ["GET"], "path": "a", "price": -1}, "negative"),
        ({"methods": ["GET"], "path": "a", "charge_on": "ok"}, "not a status"),
    ],
)
async def test_unusable_route_policies_refuse_to_start(
    tmp_path: Path, rule: dict[str, Any], why: str
) -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        tmp_path,
        upstreams=[{"name": "svc", "url": "http://127.0.0.1:9", "routes": [rule]}],
    )
    with pytest.raises(ConfigError, match=why):
        wiring.upstream_context(settings)
