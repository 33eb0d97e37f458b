"""The Platform API through HTTP (platform-contract §8 and our fixes), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, insert, select, update

from jwks_server import JwksServer, claims, new_key
from platform_fixtures import (
    Keys,
    create_customer,
    database,
    end_user,
    new_platform,
    new_project,
    set_project,
    user_token,
)
from support import (
    PEPPER,
    ClientFactory,
    PinnedClock,
    app_of,
    assert_error,
    pin_caller_cache_clock,
    pin_rate_limit_clock,
    pinned_metering_caches,
)
from tollhouse.billing.models import Subscription
from tollhouse.identity.models import User
from tollhouse.metering.models import UsageCounter
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import ApiKey

pytestmark = pytest.mark.anyio

REDIS_URL_ENV = "TOLLHOUSE_TEST_REDIS_URL"
DATA = "/api/data"
USAGE = "/api/usage"


async def track(client: httpx.AsyncClient, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return await client.post(DATA, headers=headers, **kw)


# --- §8 1-8: transport, keys, catalog -----------------------------------------------------


async def test_preflight_allows_the_sdk_headers(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/tiers",
        headers={
            "Origin": "https://a.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Publishable-Key, X-Clerk-Token",
        },
    )
    # Starlette answers preflights 200 (the original 204); both are successful preflights.
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] in ("https://a.example", "*")
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "x-publishable-key" in allowed
    assert "x-clerk-token" in allowed


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"]


async def test_no_credentials_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/tiers"), 401, "authentication_required")


@pytest.mark.parametrize(
    "key", ["foo", "pk_test_" + "a" * 46, "pk_live_nope", "sk_test_" + "0" * 46, ""]
)
async def test_bad_publishable_keys_are_401(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get("/api/tiers", headers={"X-Publishable-Key": key})
    assert_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize("key", ["sk_test_abc", "sk_test_" + "a" * 46, "sk_live_x"])
async def test_bad_secret_keys_are_401(client: httpx.AsyncClient, key: str) -> None:
    response = await client.get("/api/dashboard", headers={"Authorization": f"Bearer {key}"})
    assert_error(response, 401, "invalid_api_key")


async def test_a_publishable_key_on_a_secret_route_is_403_before_anything_else(
    client: httpx.AsyncClient,
) -> None:
    keys = await new_project(client)
    for pk in (keys.pk, "pk_test_unknown", "garbage"):
        headers = {"X-Publishable-Key": pk}
        assert_error(
            await client.get("/api/dashboard", headers=headers), 403, "secret_key_required"
        )
        # Refused before the body is validated ({} lacks the email).
        response = await client.post("/api/customers", json={}, headers=headers)
        assert_error(response, 403, "secret_key_required")
        response = await client.get("/api/customers/cus_x/credits", headers=headers)
        assert_error(response, 403, "secret_key_required")
    # A publishable key presented as a secret one is no secret key either.
    response = await client.get("/api/dashboard", headers={"Authorization": f"Bearer {keys.pk}"})
    assert_error(response, 401, "invalid_api_key")


async def test_tiers_are_the_projects_own(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    # Same platform, other project; same name in live mode; another platform.
    await new_project(client, keys.platform_id, name="other", tiers=[{"name": "other-tier"}])
    await new_project(client, keys.platform_id, mode="live", tiers=[{"name": "live-tier"}])
    await new_project(client, tiers=[{"name": "foreign"}])
    for headers in (keys.publishable, keys.secret):
        response = await client.get("/api/tiers", headers=headers)
        assert response.status_code == 200, response.text
        tiers = {tier["id"]: tier for tier in response.json()["tiers"]}
        assert set(tiers) == {"free", "pro", "max"}
    pro = tiers["pro"]
    assert pro["price"] == 2900
    assert pro["limit"] == 10
    assert pro["name"] == pro["displayName"] == "Pro"
    assert tiers["max"]["limit"] == "unlimited"
    assert tiers["free"]["features"] == ["3 calls"]
    assert set(pro) >= {
        "billingMode",
        "imageUrl",
        "inventory",
        "soldOut",
        "popular",
        "priceId",
        "productId",
        "trialDays",
        "description",
    }


async def test_products_are_one_off_items_with_stock(client: httpx.AsyncClient) -> None:
    store = await new_project(client, type="store")
    response = await client.get("/api/products", headers=store.publishable)
    assert response.status_code == 200, response.text
    products = {p["key"]: p for p in response.json()["products"]}
    assert set(products) == {"a", "b", "c"}
    assert products["a"]["soldOut"] is False
    assert products["a"]["inventory"] == 2
    assert products["b"]["soldOut"] is True
    assert products["c"]["inventory"] is None
    assert products["c"]["soldOut"] is False
    assert products["a"]["currency"] == "usd"
    assert products["a"]["price"] == 500
    saas = await new_project(client)
    assert (await client.get("/api/products", headers=saas.publishable)).json() == {"products": []}


async def test_a_valid_secret_key_opens_the_dashboard(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys, "dash@example.com")
    assert (await track(client, headers)).status_code == 200
    response = await client.get("/api/dashboard", headers=keys.secret)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metrics"]["usageThisPeriod"] == 1
    assert body["metrics"]["activeSubs"] == 0
    assert body["metrics"]["mrr"] == 0
    assert body["keys"]["publishableKey"] == keys.pk
    assert body["keys"]["secretKey"].startswith("sk_test_")
    assert keys.sk not in str(body)
    assert body["keys"]["platformId"] == keys.platform_id
    assert body["keys"]["mode"] == "test"
    assert [c["email"] for c in body["customers"]] == ["dash@example.com"]
    assert body["customers"][0]["usageCount"] == 1
    assert body["customers"][0]["limit"] == 3
    assert {t["id"] for t in body["tiers"]} == {"free", "pro", "max"}
    assert len(body["usageSeries"]) == 30
    assert body["usageSeries"][-1]["units"] == 1
    assert body["webhook"] == {"lastEventAt": None, "recent": []}
    assert body["filters"] == {
        "platformId": keys.platform_id,
        "publishableKey": keys.pk,
        "mode": "test",
    }


async def test_dashboard_store_metrics_and_totals(client: httpx.AsyncClient) -> None:
    store = await new_project(client, type="store")
    metrics = (await client.get("/api/dashboard", headers=store.secret)).json()["metrics"]
    assert metrics["lowStockProducts"] == 1
    assert metrics["totalInventory"] == 2
    await new_project(client, store.platform_id, name="shop", mode="live", type="store")
    await new_project(client, name="elsewhere", mode="live")  # another platform: not counted
    response = await client.get("/api/dashboard/totals", headers=store.secret)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "totals": {
            "mrr": 0,
            "activeSubs": 0,
            "cancelingSubs": 0,
            "totalProducts": 3,
            "liveProjects": 1,
            # The SDK's names beside the original's.
            "activeSubscriptions": 0,
            "cancelingSubscriptions": 0,
            "totalMRR": 0,
            "totalCustomers": 0,
            "totalRevenue": 0,
        },
        "platformId": store.platform_id,
    }


# --- §8 9-15: usage -----------------------------------------------------------------------


async def test_usage_needs_an_end_user_token(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    assert_error(await track(client, keys.publishable), 401, "invalid_end_user_token")
    assert_error(await track(client, keys.secret), 401, "invalid_end_user_token")
    bad = {**keys.publishable, "X-Clerk-Token": "not.a.jwt"}
    assert_error(await track(client, bad), 401, "invalid_end_user_token")


async def test_a_token_of_another_project_is_refused(client: httpx.AsyncClient) -> None:
    a = await new_project(client)
    b = await new_project(client, a.platform_id, name="b")
    token = (await end_user(client, a))["X-Clerk-Token"]
    for headers in (b.publishable, b.secret):
        response = await track(client, {**headers, "X-Clerk-Token": token})
        assert_error(response, 403, "publishable_key_mismatch")
    # With its own project's secret key the same token works (SK + token).
    assert (await track(client, {**a.secret, "X-User-Token": token})).status_code == 200


async def test_free_user_hits_the_tier_limit(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys)
    for expected in (1, 2, 3):
        response = await track(client, headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        assert body["data"]["message"]
        assert body["usage"]["count"] == expected
        assert body["usage"]["limit"] == 3
        assert body["usage"]["plan"] == "free"
        assert body["usage"]["remaining"] == 3 - expected
    body = assert_error(await track(client, headers), 403, "tier_limit_reached")
    assert body["usageCount"] == 3
    assert body["limit"] == 3
    usage = (await client.get(USAGE, headers=headers)).json()
    assert usage["usageCount"] == 3
    assert usage["remaining"] == 0
    assert usage["plan"] == "free"
    assert usage["limit"] == 3
    assert usage["userId"].startswith("cus_")
    assert usage["periodStart"] < usage["periodEnd"]


async def test_units_are_counted_and_bounded(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys, plan="pro")
    response = await track(client, headers, json={"units": 4, "ignored": "by the contract"})
    assert response.json()["usage"]["count"] == 4
    for bad in ({"units": 0}, {"units": 1001}, {"units": "2"}, {"units": 1.5}):
        assert_error(await track(client, headers, json=bad), 422, "validation_error")
    body = assert_error(await track(client, headers, json={"units": 7}), 403, "tier_limit_reached")
    assert body["usageCount"] == 4


async def test_unlimited_tier_counts_and_never_refuses(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys, plan="max")
    for expected in range(1, 6):
        usage = (await track(client, headers)).json()["usage"]
        assert usage["count"] == expected
        assert usage["limit"] == "unlimited"
        assert usage["remaining"] == "unlimited"
    report = (await client.get(USAGE, headers=headers)).json()
    assert report["limit"] == "unlimited"
    assert report["remaining"] == "unlimited"


async def test_an_ended_period_starts_again(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys)
    for _ in range(3):
        await track(client, headers)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with database(client).session() as session:
        await session.execute(
            update(UsageCounter).values(
                period_start=yesterday - timedelta(days=30), period_end=yesterday
            )
        )
    usage = (await track(client, headers)).json()["usage"]
    today = datetime.now(UTC).date()
    assert usage["count"] == 1
    start = datetime.fromisoformat(usage["periodStart"])
    assert start.date() == today
    assert datetime.fromisoformat(usage["periodEnd"]) - start == timedelta(days=30)


async def test_the_stored_plan_beats_the_tokens_plan(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "up@example.com")
    token = await user_token(client, keys, customer["id"])  # says plan "free"
    headers = {**keys.publishable, "X-Clerk-Token": token}
    assert (await track(client, headers)).json()["usage"]["limit"] == 3
    response = await client.patch(
        f"/api/customers/{customer['id']}", json={"plan": "pro"}, headers=keys.secret
    )
    assert response.status_code == 200, response.text
    assert response.json()["customer"]["plan"] == "pro"
    usage = (await track(client, headers)).json()["usage"]
    assert usage["plan"] == "pro"
    assert usage["limit"] == 10


async def test_a_plan_without_a_tier_is_refused(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "gold@example.com")
    context = app_of(client).state.identity
    token, _ = context.end_user_signer.mint(
        project_id=keys.project_id,
        subject=customer["id"],
        plan="gold",
        publishable_key=keys.pk,
        email=None,
        ttl_seconds=60,
    )
    async with database(client).session() as session:  # no stored plan: the claim counts
        await session.execute(update(User).values(plan=None))
    headers = {**keys.publishable, "X-Clerk-Token": token}
    assert_error(await track(client, headers), 403, "unknown_plan")
    assert_error(await client.get(USAGE, headers=headers), 403, "unknown_plan")


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for each rate-limiter backend, with a prefix of the test's own."""
    if request.param == "memory":
        return {}
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(f"Redis rate limiter not tested: {REDIS_URL_ENV} is not set")
    return {"redis_url": url, "rate_limit_key_prefix": f"test:{uuid.uuid4().hex}:"}


async def test_the_projects_rate_limit_answers_429(
    make_client: ClientFactory, limiter: dict[str, Any]
) -> None:
    client = await make_client(**limiter)
    keys = await new_project(client, rate_limit_per_minute=5)
    headers = await end_user(client, keys, plan="max")
    other = await end_user(client, keys, "other@example.com", plan="max")
    clock = PinnedClock()
    await pin_rate_limit_clock(client, clock)
    statuses = [(await track(client, headers)).status_code for _ in range(5)]
    assert statuses == [200] * 5
    refused = await client.get(USAGE, headers=headers)
    body = assert_error(refused, 429, "rate_limited")
    assert refused.headers["retry-after"] == "30"
    assert body["retryAfter"] == 30
    # Per end user: another user of the same key is not affected.
    assert (await track(client, other)).status_code == 200
    # The next window starts afresh.
    clock.now += 30
    assert (await track(client, headers)).status_code == 200


# --- §8 22 and customers ------------------------------------------------------------------


async def test_customers_are_created_with_the_projects_key(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    assert_error(
        await client.post("/api/customers", json={}, headers=keys.secret), 422, "validation_error"
    )
    response = await client.post(
        "/api/customers",
        json={"email": "Ann@Example.com", "firstName": "Ann", "lastName": "Lee"},
        headers=keys.secret,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    customer = body["customer"]
    assert body["success"] is True
    assert customer["publishableKey"] == keys.pk
    assert customer["plan"] == "free"
    assert customer["id"].startswith("cus_")
    assert customer["email"] == "ann@example.com"
    assert customer["firstName"] == "Ann"
    assert customer["lastName"] == "Lee"
    assert customer["createdAt"]
    fetched = await client.get(f"/api/customers/{customer['id']}", headers=keys.secret)
    assert fetched.json()["customer"] == customer
    again = await client.post(
        "/api/customers", json={"email": "ann@example.com"}, headers=keys.secret
    )
    assert_error(again, 409, "customer_exists")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"email": "a@example.com", "password": "hunter22"}, "passwords_not_supported"),
        ({"email": "a@example.com", "plan": "gold"}, "unknown_plan"),
        ({"email": "not-an-email"}, "validation_error"),
        ({"email": "a@example.com", "role": "admin"}, "validation_error"),
        ({"email": "a@example.com", "firstName": "x" * 201}, "validation_error"),
    ],
)
async def test_customer_bodies_that_are_refused(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    keys = await new_project(client)
    assert_error(await client.post("/api/customers", json=body, headers=keys.secret), 422, code)


async def test_free_is_accepted_only_while_a_project_has_no_tiers(
    client: httpx.AsyncClient,
) -> None:
    bare = await new_project(client, tiers=[])
    customer = await create_customer(client, bare, "first@example.com")
    assert customer["plan"] == "free"
    no_free = await new_project(client, name="paid", tiers=[{"name": "pro", "limit": 5}])
    response = await client.post(
        "/api/customers", json={"email": "x@example.com"}, headers=no_free.secret
    )
    assert_error(response, 422, "unknown_plan")


async def test_another_projects_customers_are_not_found(make_client: ClientFactory) -> None:
    client = await make_client()
    a = await new_project(client)
    b = await new_project(client, a.platform_id, name="b")
    live = await new_project(client, a.platform_id, mode="live")  # same name, other mode
    foreign = await new_project(client)  # another platform
    customer = await create_customer(client, a, "mine@example.com")
    async with database(client).session() as session:
        uid = await session.scalar(select(User.id).where(User.external_id == customer["id"]))
    for ref in (customer["id"], str(uid)):
        assert (await client.get(f"/api/customers/{ref}", headers=a.secret)).status_code == 200
        for other in (b, live, foreign):
            path = f"/api/customers/{ref}"
            requests = [
                client.get(path, headers=other.secret),
                client.patch(path, json={"plan": "pro"}, headers=other.secret),
                client.delete(path, headers=other.secret),
                client.post(f"{path}/token", headers=other.secret),
                client.get(f"{path}/credits", headers=other.secret),
                client.post(f"{path}/credits/grant", json={"amount": 5}, headers=other.secret),
                client.get(f"{path}/credits/history", headers=other.secret),
            ]
            for response in await asyncio.gather(*requests):
                body = assert_error(response, 404, "customer_not_found")
                assert "mine@example.com" not in str(body)
    # Nothing changed for the real owner.
    still = (await client.get(f"/api/customers/{customer['id']}", headers=a.secret)).json()
    assert still["customer"]["plan"] == "free"
    assert (await client.get(f"/api/customers/{customer['id']}/credits", headers=a.secret)).json()[
        "balance"
    ] == 0
    dashboard = (await client.get("/api/dashboard", headers=live.secret)).json()
    assert dashboard["customers"] == []
    assert dashboard["keys"]["mode"] == "live"


async def test_patch_and_delete(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "del@example.com", plan="pro")
    path = f"/api/customers/{customer['id']}"
    assert_error(
        await client.patch(path, json={"plan": "gold"}, headers=keys.secret), 422, "unknown_plan"
    )
    assert_error(await client.patch(path, json={}, headers=keys.secret), 422, "validation_error")
    response = await client.patch(path, json={"plan": "MAX"}, headers=keys.secret)
    assert response.json()["customer"]["plan"] == "max"
    granted = await client.post(f"{path}/credits/grant", json={"amount": 7}, headers=keys.secret)
    assert granted.status_code == 200, granted.text
    token = await user_token(client, keys, customer["id"])
    response = await client.delete(path, headers=keys.secret)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "success": True,
        "message": response.json()["message"],
        "deleted": {"id": customer["id"], "email": "del@example.com"},
    }
    assert_error(await client.get(path, headers=keys.secret), 404, "customer_not_found")
    assert_error(await client.delete(path, headers=keys.secret), 404, "customer_not_found")
    async with database(client).session() as session:
        user = await session.scalar(select(User).where(User.project_id == keys.project_id))
    assert user is not None
    assert user.email is None
    assert user.external_id is None
    assert not user.is_active
    assert user.erased_at is not None
    # The same email can become a customer again, a new one.
    again = await create_customer(client, keys, "del@example.com")
    assert again["id"] != customer["id"]
    # The old token's subject no longer names anyone: it starts a new, empty user (known
    # limit: a token minted before the deletion stays valid until it expires).
    response = await client.get(USAGE, headers={**keys.publishable, "X-Clerk-Token": token})
    assert response.status_code == 200
    assert response.json()["usageCount"] == 0


async def test_tokens_and_jwks(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "tok@example.com", plan="pro")
    response = await client.post(f"/api/customers/{customer['id']}/token", headers=keys.secret)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tokenType"] == "Bearer"
    expires = datetime.fromisoformat(body["expiresAt"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(minutes=60)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    key = jwt.PyJWK(jwks["keys"][0])
    claims_ = jwt.decode(body["token"], key.key, algorithms=["ES256"], audience=keys.project_id)
    assert claims_["sub"] == customer["id"]
    assert claims_["plan"] == "pro"
    assert claims_["publishableKey"] == keys.pk
    assert claims_["email"] == "tok@example.com"


async def test_the_projects_own_identity_provider(client: httpx.AsyncClient) -> None:
    idp = JwksServer(keys=[new_key("idp-1")]).start()
    try:
        keys = await new_project(client)
        other = await new_project(client, keys.platform_id, name="other")
        issuer, audience = "https://clerk.example.test", "my-app"
        await set_project(
            client,
            keys.project_id,
            end_user_issuer=issuer,
            end_user_jwks_url=idp.url,
            end_user_audience=audience,
        )
        token = idp.sign(
            idp.keys[0],
            claims(
                issuer,
                audience,
                "user_clerk_1",
                email="c@example.com",
                publicMetadata={"plan": "pro", "publishableKey": keys.pk},
            ),
        )
        headers = {**keys.publishable, "X-Clerk-Token": token}
        usage = (await track(client, headers)).json()["usage"]
        assert usage["plan"] == "pro"
        assert usage["limit"] == 10
        customer = (await client.get("/api/customers/user_clerk_1", headers=keys.secret)).json()
        assert customer["customer"]["email"] == "c@example.com"
        # Bound to another project's key by its claim: refused.
        foreign = idp.sign(
            idp.keys[0],
            claims(issuer, audience, "user_clerk_2", publicMetadata={"publishableKey": other.pk}),
        )
        response = await track(client, {**keys.publishable, "X-Clerk-Token": foreign})
        assert_error(response, 403, "publishable_key_mismatch")
        # A project without its own issuer does not accept that token at all.
        response = await track(client, {**other.publishable, "X-Clerk-Token": token})
        assert response.status_code in (401, 403)
    finally:
        idp.stop()


# --- key lifecycle ------------------------------------------------------------------------


async def test_a_rolled_key_works_during_its_grace_only(make_client: ClientFactory) -> None:
    client = await make_client(caller_cache_seconds=0)
    keys = await new_project(client)
    async with database(client).session() as session:
        old = await session.get_one(ApiKey, keys.sk_id)
        rolled = await tenancy.roll_key(session, PEPPER, old, timedelta(hours=1))
    new = {"Authorization": f"Bearer {rolled.plaintext}"}
    assert (await client.get("/api/dashboard", headers=keys.secret)).status_code == 200
    assert (await client.get("/api/dashboard", headers=new)).status_code == 200
    async with database(client).session() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == keys.sk_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert_error(await client.get("/api/dashboard", headers=keys.secret), 401, "invalid_api_key")
    assert (await client.get("/api/dashboard", headers=new)).status_code == 200


async def test_a_revoked_key_is_refused_within_two_seconds_everywhere(
    make_client: ClientFactory,
) -> None:
    first = await make_client(database_pool_size=2, database_max_overflow=0)
    second = await make_client(database_pool_size=2, database_max_overflow=0)
    clock = PinnedClock()
    for client in (first, second):
        pin_caller_cache_clock(client, clock)
    keys = await new_project(first)
    calls = [
        (client, path, headers)
        for client in (first, second)
        for path, headers in (("/api/tiers", keys.publishable), ("/api/dashboard", keys.secret))
    ]
    for client, path, headers in calls:  # warm both caches
        assert (await client.get(path, headers=headers)).status_code == 200
    # Revoked as another process would: straight in the database.
    async with database(first).session() as session:
        for key_id in (keys.pk_id, keys.sk_id):
            await tenancy.revoke_key(session, await session.get_one(ApiKey, key_id))
    clock.now += 1.9
    for client, path, headers in calls:  # inside the window: still trusted
        assert (await client.get(path, headers=headers)).status_code == 200
    clock.now += 0.11
    for client, path, headers in calls:  # past 2 s: refused everywhere
        assert_error(await client.get(path, headers=headers), 401, "invalid_api_key")


# --- idempotency and credits --------------------------------------------------------------


async def test_idempotent_usage_tracking(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    headers = await end_user(client, keys, plan="pro")
    once = {**headers, "Idempotency-Key": "track-1"}
    first = await track(client, once, json={"units": 2})
    again = await track(client, once, json={"units": 2})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json()
    assert first.json()["usage"]["count"] == 2
    assert_error(await track(client, once, json={"units": 3}), 409, "idempotency_key_reused")
    assert (await client.get(USAGE, headers=headers)).json()["usageCount"] == 2
    # Another user's same key is their own.
    other = {
        **await end_user(client, keys, "o@example.com", plan="pro"),
        "Idempotency-Key": "track-1",
    }
    assert (await track(client, other, json={"units": 2})).headers.get(
        "idempotency-replayed"
    ) is None


async def test_customer_credits(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "c@example.com")
    path = f"/api/customers/{customer['id']}/credits"
    balance = (await client.get(path, headers=keys.secret)).json()
    assert balance == {"balance": 0, "lifetimeEarned": 0, "lifetimeSpent": 0}
    grant = {**keys.secret, "Idempotency-Key": "g-1"}
    first = await client.post(
        f"{path}/grant", json={"amount": 10, "description": "hi"}, headers=grant
    )
    assert first.status_code == 200, first.text
    assert first.json()["balance"] == 10
    assert first.json()["transaction"]["type"] == "api_grant"
    again = await client.post(
        f"{path}/grant", json={"amount": 10, "description": "hi"}, headers=grant
    )
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json()
    for bad in ({"amount": 0}, {"amount": 1_000_000_001}, {"amount": "5"}, {"amount": 5, "x": 1}):
        response = await client.post(f"{path}/grant", json=bad, headers=keys.secret)
        assert_error(response, 422, "validation_error")
    assert (await client.get(path, headers=keys.secret)).json()["balance"] == 10
    history = (await client.get(f"{path}/history?limit=5", headers=keys.secret)).json()
    assert [t["amount"] for t in history["transactions"]] == [10]
    assert_error(
        await client.get(f"{path}/history?limit=0", headers=keys.secret), 422, "validation_error"
    )


async def test_customer_credit_spends(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)
    customer = await create_customer(client, keys, "s@example.com")
    path = f"/api/customers/{customer['id']}/credits"
    await client.post(f"{path}/grant", json={"amount": 10}, headers=keys.secret)
    spend = {**keys.secret, "Idempotency-Key": "s-1"}
    first = await client.post(f"{path}/spend", json={"amount": 4}, headers=spend)
    assert first.status_code == 200, first.text
    again = await client.post(f"{path}/spend", json={"amount": 4}, headers=spend)
    assert again.json() == first.json()
    assert first.json()["balance"] == 6
    body = assert_error(
        await client.post(f"{path}/spend", json={"amount": 7}, headers=keys.secret),
        402,
        "insufficient_credits",
    )
    assert body["detail"] == {"balance": 6, "cost": 7}
    balance = (await client.get(path, headers=keys.secret)).json()
    assert balance == {"balance": 6, "lifetimeEarned": 10, "lifetimeSpent": 4}
    history = (await client.get(f"{path}/history", headers=keys.secret)).json()["transactions"]
    assert [(t["amount"], t["type"]) for t in history] == [(-4, "api_spend"), (10, "api_grant")]


# --- concurrency and routing --------------------------------------------------------------


async def test_concurrent_tracking_never_passes_the_limit(
    postgres_only: str, make_client: ClientFactory
) -> None:
    client = await make_client()
    keys = await new_project(client, rate_limit_per_minute=100_000)
    headers = await end_user(client, keys, plan="pro")  # limit 10
    responses = await asyncio.gather(*(track(client, headers) for _ in range(100)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(403) == 90
    counts = sorted(r.json()["usage"]["count"] for r in responses if r.status_code == 200)
    assert counts == list(range(1, 11))
    async with database(client).session() as session:
        assert await session.scalar(select(func.sum(UsageCounter.count))) == 10


def test_platform_routes_do_not_collide_with_the_gateway() -> None:
    from tollhouse.platform_api.routes import router

    paths = {getattr(route, "path", "") for route in router.routes}
    assert paths
    assert not any(path.startswith("/api/v1") for path in paths)
    assert not any(path.startswith("/api/{") for path in paths)


async def test_key_checks_share_one_platform(client: httpx.AsyncClient) -> None:
    """Keys name exactly their project: a live key sees live data only."""
    platform = await new_platform(client)
    test = await new_project(client, platform)
    live = await new_project(client, platform, mode="live", tiers=[{"name": "free", "limit": 1}])
    live_user = await end_user(client, live, "l@example.com")
    assert (await track(client, live_user)).json()["usage"]["limit"] == 1
    test_tiers = (await client.get("/api/tiers", headers=test.publishable)).json()["tiers"]
    assert len(test_tiers) == 3
    # A test token with the live key: another project.
    test_user = await end_user(client, test, "t@example.com")
    response = await track(
        client, {**live.publishable, "X-Clerk-Token": test_user["X-Clerk-Token"]}
    )
    assert_error(response, 403, "publishable_key_mismatch")
    assert isinstance(test, Keys)


# --- the entitled plan, cached per process for CALLER_CACHE_SECONDS -----------------------


async def _subscribe_elsewhere(client: httpx.AsyncClient, keys: Keys, plan: str) -> None:
    """An entitled subscription for the project's one end user, written as another process
    (a webhook on another replica) would: straight through the engine."""
    async with database(client).session() as session:
        user_id = await session.scalar(select(User.id).where(User.project_id == keys.project_id))
    async with database(client).engine.begin() as connection:
        await connection.execute(
            insert(Subscription).values(
                project_id=keys.project_id,
                user_id=user_id,
                stripe_subscription_id=f"sub_{uuid.uuid4().hex}",
                plan=plan,
                status="active",
            )
        )


async def _plan_of_next_call(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post(DATA, headers=headers)
    assert response.status_code == 200, response.text
    plan: str = response.json()["usage"]["plan"]
    return plan


@pytest.mark.parametrize("cache_seconds", [0, 0.3])
async def test_a_plan_change_elsewhere_is_seen_within_the_cache_window(
    make_client: ClientFactory, cache_seconds: float
) -> None:
    client = await make_client(caller_cache_seconds=cache_seconds)
    clock = PinnedClock()
    with pinned_metering_caches(clock):
        keys = await new_project(client)
        headers = await end_user(client, keys, "subscriber@example.com")
        assert await _plan_of_next_call(client, headers) == "free"
        await _subscribe_elsewhere(client, keys, "pro")
        if cache_seconds:
            assert await _plan_of_next_call(client, headers) == "free"  # at most the window
            clock.now += cache_seconds + 0.05
        assert await _plan_of_next_call(client, headers) == "pro"


async def test_a_plan_change_this_process_commits_is_seen_at_once(
    make_client: ClientFactory,
) -> None:
    client = await make_client(caller_cache_seconds=60)
    keys = await new_project(client)
    headers = await end_user(client, keys, "subscriber@example.com")
    assert await _plan_of_next_call(client, headers) == "free"
    async with database(client).session() as session:  # an ORM insert (flush)
        user_id = await session.scalar(select(User.id).where(User.project_id == keys.project_id))
        assert user_id is not None
        session.add(
            Subscription(
                project_id=keys.project_id,
                user_id=user_id,
                stripe_subscription_id="sub_here",
                plan="pro",
                status="active",
            )
        )
    assert await _plan_of_next_call(client, headers) == "pro"
    async with database(client).session() as session:  # a Core update (the webhook's kind)
        await session.execute(update(Subscription).values(status="canceled"))
    assert await _plan_of_next_call(client, headers) == "free"
