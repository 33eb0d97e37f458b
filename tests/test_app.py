"""The app's edges: health, docs, metrics, the error envelope, request ids, headers, CORS, logs."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from support import (
    ADMIN_KEY,
    SERVICE,
    SERVICE_KEY,
    ClientFactory,
    app_of,
    assert_error,
    resolve,
    token_pair,
)
from tollhouse.db.engine import Database
from tollhouse.kit.logging import configure_logging

pytestmark = pytest.mark.anyio


async def test_health_answers_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] is True
    assert body["database_backend"] in ("sqlite", "postgresql")
    assert body["version"]


async def test_deep_health_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/deep")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


@asynccontextmanager
async def database_away(client: httpx.AsyncClient) -> AsyncIterator[None]:
    app = app_of(client)
    healthy = app.state.database
    app.state.database = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        yield
    finally:
        await app.state.database.dispose()
        app.state.database = healthy


async def test_deep_health_reports_an_unreachable_database(client: httpx.AsyncClient) -> None:
    async with database_away(client):
        response = await client.get("/health/deep")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["database"] is False


async def test_metrics_name_the_replica(make_client: ClientFactory) -> None:
    client = await make_client(replica_name="replica-b")
    await client.get("/health/live")
    text = (await client.get("/metrics")).text
    assert (
        'tollhouse_http_requests_total{method="GET",replica="replica-b",route="/health/live",'
        'status="200"} 1.0'
    ) in text


async def test_liveness_answers_without_the_database(client: httpx.AsyncClient) -> None:
    async with database_away(client):
        response = await client.get("/health/live")
        not_ready = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    body = assert_error(not_ready, 503, "not_ready")
    assert body["detail"] == {"draining": False, "database": False}
    assert (await client.get("/health/ready")).status_code == 200


async def test_readiness_turns_false_while_draining(client: httpx.AsyncClient) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    app_of(client).state.drain.begin()
    body = assert_error(await client.get("/health/ready"), 503, "not_ready")
    assert body["detail"]["draining"] is True
    # Liveness and the clients' /health are unchanged: the process still answers.
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health")).json()["status"] == "healthy"


async def test_root_names_the_service(client: httpx.AsyncClient) -> None:
    body = (await client.get("/")).json()
    assert body["name"] == "Tollhouse"
    assert body["docs"] == "/docs"


async def test_openapi_is_served_at_both_paths(client: httpx.AsyncClient) -> None:
    first = await client.get("/openapi.json")
    second = await client.get("/api/v1/openapi.json")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert "/api/v1/users/resolve" in first.json()["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    await client.get("/no/such/route")
    text = (await client.get("/metrics")).text
    assert 'route="/health",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "tollhouse_http_request_duration_seconds_bucket" in text
    assert 'route="unmatched",status="404"} 1.0' in text


async def test_unknown_route_is_a_404_envelope(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_a_405_envelope(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/health"), 405, "method_not_allowed")


async def test_validation_error_lists_fields_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/users/resolve",
        json={"external_id": 123, "email": "secret-looking-value"},
        headers=SERVICE,
    )
    body = assert_error(response, 422, "validation_error")
    fields = {tuple(err["loc"]) for err in body["detail"]}
    assert ("body", "external_id") in fields
    assert ("body", "email") in fields
    assert "secret-looking-value" not in response.text


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/users/resolve",
        content=b'{"external_id": ',
        headers={**SERVICE, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_json")


async def test_declared_oversized_body_is_a_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/users/resolve",
        content=b"x" * (10 * 1024 * 1024),
        headers={**SERVICE, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


async def test_streamed_oversized_body_is_a_413_and_writes_nothing(
    make_client: ClientFactory,
) -> None:
    client = await make_client(max_body_bytes=4096)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"external_id": "big", "display_name": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}'

    response = await client.post(
        "/api/v1/users/resolve",
        content=chunks(),
        headers={**SERVICE, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")
    export = await client.post("/api/v1/auth/token", json={"user_id": "big"}, headers=SERVICE)
    assert_error(export, 404, "user_not_found")


async def test_unhandled_exception_is_a_500_envelope_with_headers(
    client: httpx.AsyncClient,
) -> None:
    app = app_of(client)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom with a secret inside")

    response = await client.get("/boom")
    body = assert_error(response, 500, "internal_error")
    assert "kaboom" not in response.text
    assert body["request_id"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "trace-abc.123"})
    assert echoed.headers["x-request-id"] == "trace-abc.123"
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) == 32
    unsafe = await client.get("/health", headers={"X-Request-ID": "a b\tc" + "x" * 300})
    assert unsafe.headers["x-request-id"] != "a b\tc" + "x" * 300


@pytest.mark.parametrize("path", ["/health", "/no/such/route", "/api/v1/auth/me"])
async def test_security_headers_on_every_response(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_cors_preflight_is_answered_before_auth(make_client: ClientFactory) -> None:
    client = await make_client(cors_origins="https://app.example")
    response = await client.options(
        "/api/v1/auth/me",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    simple = await client.get("/health", headers={"Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    foreign = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers


async def test_cors_disabled_sends_no_cors_headers(make_client: ClientFactory) -> None:
    client = await make_client(cors_enabled=False)
    response = await client.get("/health", headers={"Origin": "https://app.example"})
    assert not any(name.startswith("access-control-") for name in response.headers)
    preflight = await client.options(
        "/api/v1/auth/me",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    assert preflight.status_code == 405


async def test_logs_are_json_and_never_contain_secrets(client: httpx.AsyncClient) -> None:
    @app_of(client).get("/boom-with-secret")
    async def boom() -> None:
        held_in_a_local = SERVICE_KEY
        raise RuntimeError(f"failed near {len(held_in_a_local)} bytes")

    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    try:
        user = await resolve(client, "log-user")
        pair = await token_pair(client, user)
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
        )
        await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        await client.get("/api/v1/status", headers={"X-Admin-Key": ADMIN_KEY})
        await client.get("/api/v1/status?token=query-secret", headers={"X-Admin-Key": "wrong"})
        await client.get("/boom-with-secret", headers={"X-Service-Key": SERVICE_KEY})
    finally:
        configure_logging("WARNING")
    output = stream.getvalue()
    assert '"event": "request"' in output
    assert '"event": "unhandled_error"' in output
    for secret in (SERVICE_KEY, ADMIN_KEY, pair["access_token"], pair["refresh_token"]):
        assert secret not in output
    assert "query-secret" not in output
    logging.getLogger().handlers.clear()
