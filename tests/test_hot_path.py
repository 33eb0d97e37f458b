"""The lean path for POST /api/data and GET /api/usage (kit/hot_routes.py) answers like the
router would — body rules, errors, headers, metrics label — and load shedding
(kit/shedding.py) refuses the excess at once with 503 + Retry-After, driven by an event, not
by timing. The Platform API's own tests (test_platform_api.py) run through the lean path
unchanged; these cover what they do not."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from fastapi import FastAPI

from platform_fixtures import end_user, new_project
from support import ClientFactory, app_of, assert_error
from tollhouse.kit.logging import configure_logging

pytestmark = pytest.mark.anyio

DATA = "/api/data"


async def test_the_body_follows_the_routers_rules(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys, plan="pro")
    malformed = await client.post(
        DATA, content=b"{units", headers={**headers, "Content-Type": "application/json"}
    )
    assert_error(malformed, 400, "malformed_json")
    # JSON is read only with a JSON content type, and the answer says so (415).
    as_text = await client.post(
        DATA, content=b'{"units": 2}', headers={**headers, "Content-Type": "text/plain"}
    )
    assert_error(as_text, 415, "unsupported_media_type")
    bad = await client.post(DATA, json={"units": 0}, headers=headers)
    body = assert_error(bad, 422, "validation_error")
    assert body["detail"][0]["loc"] == ["body", "units"]
    counted = await client.post(DATA, json={"units": 2}, headers=headers)
    assert counted.status_code == 200
    assert counted.json()["usage"]["count"] == 2
    assert counted.headers["x-request-id"]
    assert counted.headers["x-content-type-options"] == "nosniff"
    # Other methods on the same path go to the router as before.
    assert_error(await client.get(DATA, headers=headers), 405, "method_not_allowed")


async def test_refusals_and_metrics_keep_the_route_template(client: httpx.AsyncClient) -> None:
    refused = await client.post(DATA, headers={"X-Request-ID": "req-hot-1"})
    body = assert_error(refused, 401, "authentication_required")
    assert body["request_id"] == "req-hot-1"
    assert refused.headers["x-request-id"] == "req-hot-1"
    metrics = (await client.get("/metrics")).text
    assert 'route="/api/data"' in metrics


async def test_a_dropped_access_log_line_runs_no_processor(client: httpx.AsyncClient) -> None:
    """At WARNING the access log is skipped before structlog is called."""
    stream = io.StringIO()
    configure_logging("WARNING", json=True, stream=stream)
    try:
        await client.post(DATA)
        assert stream.getvalue() == ""
        configure_logging("INFO", json=True, stream=stream)
        await client.post(DATA)
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert (line["event"], line["route"], line["status"]) == ("request", "/api/data", 401)
    finally:
        configure_logging("WARNING")


async def test_past_the_bound_requests_are_shed_at_once(make_client: ClientFactory) -> None:
    client = await make_client(max_concurrent_requests=2)
    app: FastAPI = app_of(client)
    entered, release = asyncio.Event(), asyncio.Event()
    waiting = 0

    async def slow() -> dict[str, bool]:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            entered.set()
        await release.wait()
        return {"done": True}

    app.add_api_route("/test/slow", slow)
    held = [asyncio.create_task(client.get("/test/slow")) for _ in range(2)]
    await entered.wait()  # both admitted requests are in flight
    shed = await client.get("/test/slow", headers={"X-Request-ID": "req-shed"})
    body = assert_error(shed, 503, "overloaded")
    assert shed.headers["retry-after"] == "1"
    assert (body["retryAfter"], body["request_id"]) == (1, "req-shed")
    assert (await client.get("/health")).status_code == 200  # probes are never shed
    release.set()
    assert [(await task).status_code for task in held] == [200, 200]
    assert (await client.get("/test/slow")).status_code == 200  # room again


async def test_gw_takes_the_lean_path_with_the_routers_answers(client: httpx.AsyncClient) -> None:
    """`/gw/…` is served under its prefix (kit/hot_routes.py): the app-wide NUL refusal runs
    first, a refusal keeps the route template in the metrics, and what the route's pattern
    or methods do not take gets the router's own answer."""
    nul = await client.get("/gw/prj_x/a%00b")
    assert_error(nul, 422, "validation_error")
    assert_error(await client.get("/gw/prj_x/ping"), 401, "authentication_required")
    metrics = (await client.get("/metrics")).text
    assert 'route="/gw/{project_id}/{path:path}"' in metrics
    # Not the pattern (no path after the project): the router's redirect to the slash form.
    unfit = await client.get("/gw/prj_x")
    assert (unfit.status_code, unfit.headers["location"]) == (
        307,
        "http://tollhouse.test/gw/prj_x/",
    )
    assert_error(await client.request("TRACE", "/gw/prj_x/ping"), 405, "method_not_allowed")
