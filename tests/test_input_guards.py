"""Bad bytes and impossible numbers get a 4xx in the envelope before anything is stored or
spent (issue 12 §5): NUL in any string, pages past any real page, chunked bodies over the
limit, and 405s that name every method the resource takes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, insert, select

from platform_fixtures import create_customer, database, end_user, new_project
from support import SERVICE, ClientFactory, as_user, assert_error, resolve
from test_upstreams import upstream_url  # noqa: F401 - the upstream process, a fixture
from tollhouse.identity.models import User
from tollhouse.upstreams.models import UpstreamRoute

pytestmark = pytest.mark.anyio

NUL = "\u0000"
BODY_LIMIT = 4096


async def user_count(client: httpx.AsyncClient) -> int:
    async with database(client).session() as session:
        count = await session.scalar(select(func.count()).select_from(User))
    return int(count or 0)


async def test_nul_in_any_string_is_a_422_and_nothing_is_stored(
    client: httpx.AsyncClient,
) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "nul@example.com")
    user = await resolve(client, "plain")
    users = await user_count(client)
    refused = {
        "resolve's external_id": await client.post(
            "/api/v1/users/resolve", json={"external_id": f"a{NUL}b"}, headers=SERVICE
        ),
        "a nested email": await client.post(
            "/api/v1/users/resolve",
            json={"external_id": "fine", "email": f"x{NUL}@example.com"},
            headers=SERVICE,
        ),
        "a customer's email": await client.post(
            "/api/customers", json={"email": f"c{NUL}@example.com"}, headers=keys.secret
        ),
        "a patched name": await client.patch(
            f"/api/customers/{customer['id']}",
            json={"name": f"n{NUL}"},
            headers=keys.secret,
        ),
        "a path id": await client.get("/api/customers/cus_%00x", headers=keys.secret),
        "a query parameter": await client.get(
            "/api/v1/credits/balance", params={"q": NUL}, headers=as_user(user)
        ),
    }
    for why, response in refused.items():
        body = assert_error(response, 422, "validation_error")
        assert "NUL" in body["message"], why
    assert await user_count(client) == users
    # An escaped backslash before "u0000" is text, not a NUL.
    ok = await client.post(
        "/api/v1/users/resolve", json={"external_id": "back\\u0000slash"}, headers=SERVICE
    )
    assert ok.status_code == 200, ok.text
    assert await user_count(client) == users + 1


HUGE = str(2**63)


async def test_pages_past_any_real_page_are_refused(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    user = await resolve(client, "pager")
    headers = as_user(user)
    for path, params, who in (
        ("/api/v1/timepoints", {"page": HUGE}, headers),
        ("/api/v1/users/me/timepoints", {"page": HUGE}, headers),
        ("/api/v1/credits/history", {"offset": HUGE}, headers),
        ("/api/v1/credits/history", {"limit": HUGE}, headers),
        ("/api/orders", {"offset": HUGE}, keys.secret),
    ):
        assert_error(await client.get(path, params=params, headers=who), 422, "validation_error")
    # The largest page allowed is still an answer, not an overflow.
    last = await client.get("/api/v1/timepoints", params={"page": 1_000_000}, headers=headers)
    assert last.status_code == 200, last.text
    assert last.json()["items"] == []


async def chunks(size: int) -> AsyncIterator[bytes]:
    """A body with no Content-Length: sent chunked."""
    for _ in range(size // 1024):
        yield b"x" * 1024


async def test_chunked_bodies_over_the_limit_are_413(
    make_client: ClientFactory,
    upstream_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    client = await make_client(max_body_bytes=BODY_LIMIT, allow_private_upstreams=True)
    keys = await new_project(client)
    async with database(client).session() as session:
        await session.execute(
            insert(UpstreamRoute).values(
                project_id=keys.project_id,
                path_prefix="api",
                upstream_url=upstream_url,
                methods="POST",
                units=1,
            )
        )
    user = await end_user(client, keys)
    webhook = await client.post("/webhook/stripe", content=chunks(BODY_LIMIT * 4))
    assert_error(webhook, 413, "payload_too_large")
    forwarded = await client.post(
        f"/gw/{keys.project_id}/api/echo", content=chunks(BODY_LIMIT * 4), headers=user
    )
    assert_error(forwarded, 413, "payload_too_large")


async def test_405_names_every_method_the_resource_takes(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "allow@example.com")
    response = await client.post(f"/api/customers/{customer['id']}", headers=keys.secret)
    assert_error(response, 405, "method_not_allowed")
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert allowed == {"GET", "PATCH", "DELETE"}


async def test_the_schema_declares_who_may_call_and_every_refusal(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert {schemes[name]["name"] for name in ("AdminKey", "ServiceKey", "PublishableKey")} == {
        "X-Admin-Key",
        "X-Service-Key",
        "X-Publishable-Key",
    }
    assert schemes["Bearer"] == {**schemes["Bearer"], "type": "http", "scheme": "bearer"}
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("4XX", "422", "503"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == envelope, (method, path, status)
    usage = schema["paths"]["/api/usage"]["get"]
    assert {"PublishableKey": [], "EndUserToken": []} in usage["security"]
    assert set(usage["responses"]) >= {"401", "403"}
    assert schema["paths"]["/api/v1/credits/admin/audit"]["get"]["security"] == [{"AdminKey": []}]
