"""Upstreams through real sockets: Tollhouse under uvicorn (in the test's event loop) forwarding
to real upstream processes on loopback (`upstream_app.py`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import insert, select
from starlette.requests import Request

from conftest import make_settings
from platform_fixtures import Keys, database, end_user, new_project
from support import SERVICE, ClientFactory, as_user, assert_error, free_port, resolve
from tollhouse.app import create_app
from tollhouse.kit.forwarding import Upstream, UpstreamConfig, UpstreamUnavailable
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
    response = await served.http.delete("/api/v1/upstreams/svc/echo/x", headers=SERVICE)
    assert response.status_code == 405
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
        await served.http.get("/api/v1/clockchain/text", headers=SERVICE),
        502,
        "upstream_malformed",
    )


async def test_sse_streams_through_event_by_event(served: Served) -> None:
    started = time.monotonic()
    async with served.http.stream("GET", "/api/v1/upstreams/svc/sse", headers=SERVICE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.aiter_raw()
        first = await chunks.__anext__()
        # The upstream sends its second event 2 s after the first.
        assert time.monotonic() - started < 1.5
        assert first.startswith(b"data: first")


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
        "/api/v1/clockchain/ingest/broken", json={}, headers=as_user(user)
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
    for _ in range(50):
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
    sent: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        raise httpx.ConnectError("refused", request=request)

    upstream = Upstream(
        UpstreamConfig("flaky", "http://flaky.internal"), transport=httpx.MockTransport(refuse)
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

    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.forward(Request(scope, receive), "/things")
    finally:
        await upstream.close()
    assert sent == [method] * attempts


# --- a project's /gw routes, cached per process for CALLER_CACHE_SECONDS ------------------------


async def test_gw_routes_are_read_again_within_the_cache_window(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    keys = await new_project(client, tiers=[])
    db = database(client)

    async def match(cache_seconds: float) -> platform.GatewayRoute:
        async with db.session() as session:
            return await platform.match_route(
                session, keys.project_id, "api/x", "GET", cache_seconds
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
    await asyncio.sleep(0.35)
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
