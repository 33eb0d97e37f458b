"""Gateway billing in both topologies: in-process, and a gateway forwarding to a billing app.

The two apps share the database: the gateway's /api/v1/billing/* → billing's
/internal/billing/* over a real socket (billing under uvicorn on loopback), billing's grants
and take-backs → the gateway's /internal/credits/* through `httpx.ASGITransport`. Every check
runs against the gateway's public API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from apple_pki import notification, transaction
from conftest import make_settings
from support import ClientFactory, assert_error, free_port, resolve
from test_billing_apple import (
    BILLING_KEY,
    PKI,
    SIGNUP,
    apple_settings,
    as_user,
    assert_audit_clean,
    notify,
    status,
    verify,
)
from tollhouse.app import create_app

pytestmark = pytest.mark.anyio
GATEWAY_URL = "http://gateway.internal"


class _Peer(httpx.AsyncBaseTransport):
    """An ASGI transport to an app built after the one holding it."""

    app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


@contextlib.asynccontextmanager
async def _listening(app: FastAPI) -> AsyncIterator[str]:
    """`app` under uvicorn on a loopback port, in the test's event loop (lifespan included)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the billing app did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _split(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway forwards to the billing app over a real socket (the forwarding engine's
    client); billing's grants reach the gateway in process."""
    to_gateway = _Peer()
    billing = create_app(
        make_settings(database_url, tmp_path, gateway_internal_url=GATEWAY_URL, **apple_settings()),
        "billing",
        peer_transport=to_gateway,
    )
    async with _listening(billing) as billing_url:
        gateway = create_app(
            make_settings(
                database_url, tmp_path, billing_service_url=billing_url, **apple_settings()
            ),
            # The gateway of the split, running its own jobs (`gateway` would need workers).
            "all",
        )
        to_gateway.app = gateway
        async with (
            gateway.router.lifespan_context(gateway),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://tollhouse.test"
            ) as client,
        ):
            yield client


@pytest.fixture(params=["in_process", "split"])
async def client(
    request: pytest.FixtureRequest,
    make_client: ClientFactory,
    database_url: str,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "in_process":
        yield await make_client(**apple_settings())
        return
    async for client in _split(database_url, tmp_path):
        yield client


async def balance(client: httpx.AsyncClient, user: str) -> int:
    response = await client.get("/api/v1/credits/balance", headers=as_user(user))
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


async def test_products_are_public(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/billing/products")
    assert response.status_code == 200, response.text
    assert {p["id"] for p in response.json()["products"]} >= {"credits_100"}


async def test_status_needs_a_user(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/billing/status"), 401, "authentication_required")
    user = await resolve(client, "status-user")
    body = await status(client, user)
    assert (body["balance"], body["subscription"], body["recent_purchases"]) == (SIGNUP, None, [])


async def test_apple_verify_grants_once_at_the_gateway(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "buyer")
    signed = PKI.sign(transaction("credits_100", "5000000001"))
    first = await verify(client, user, signed)
    assert first.status_code == 200, first.text
    assert (first.json()["granted"], first.json()["balance"]) == (100, SIGNUP + 100)
    again = (await verify(client, user, signed)).json()
    assert (again["granted"], again["already_verified"], again["balance"]) == (
        0,
        True,
        SIGNUP + 100,
    )
    assert await balance(client, user) == SIGNUP + 100
    [purchase] = (await status(client, user))["recent_purchases"]
    assert (purchase["type"], purchase["amount"], purchase["reference_id"]) == (
        "apple_iap",
        100,
        "5000000001",
    )
    await assert_audit_clean(client)


async def test_a_refund_goes_through_the_port(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "refunded")
    signed = PKI.sign(transaction("credits_100", "5000000002"))
    assert (await verify(client, user, signed)).status_code == 200
    spent = await client.post(
        "/internal/credits/spend",
        json={"user_id": user, "cost": 140},
        headers={"X-Service-Key": BILLING_KEY},
    )
    assert spent.status_code == 200, spent.text  # balance 10
    # The Apple webhook lives with billing: the split topology posts it to the billing app.
    hook = _billing_client(client)
    response = await notify(hook, notification("REFUND", signed, notification_uuid="u-1"))
    assert response.json() == {"received": True, "outcome": "partially_taken_back"}
    assert await balance(client, user) == 0
    assert (await status(client, user))["flag"]["unrecovered_credits"] == 90
    await assert_audit_clean(client)


def _billing_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    app: Any = client._transport.app  # type: ignore[attr-defined]
    proxy = getattr(app.state, "billing_proxy", None)
    if proxy is None:
        return client
    billing_url = proxy.upstream.config.base_url.removesuffix("/internal/billing")
    return httpx.AsyncClient(base_url=billing_url)


async def test_the_gateway_says_when_the_billing_service_is_down(
    database_url: str, tmp_path: Path
) -> None:
    """Nothing listens at BILLING_SERVICE_URL: a clear 503 in our envelope, never a 500."""
    settings = make_settings(
        database_url,
        tmp_path,
        billing_service_url="http://127.0.0.1:1",
        billing_timeout_seconds=2,
        **apple_settings(),
    )
    gateway = create_app(settings, "all")  # forwards billing: BILLING_SERVICE_URL is set
    async with (
        gateway.router.lifespan_context(gateway),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="http://tollhouse.test"
        ) as client,
    ):
        response = await client.get("/api/v1/billing/products")
        assert_error(response, 503, "billing_unavailable")
