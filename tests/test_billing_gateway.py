"""Gateway API billing through HTTP: the catalogue and a user's billing status."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from support import SERVICE, ClientFactory, app_of, assert_error, resolve
from tollhouse.billing.models import Subscription
from tollhouse.config import Settings

pytestmark = pytest.mark.anyio

CATALOGUE = {
    "credit_packs": [
        {"id": "pack_10", "name": "Ten", "credits": 10, "price_cents": 99, "currency": "EUR",
         "apple_product_id": "com.example.pack10", "stripe_price_id": "price_10"},
    ],
    "subscriptions": [
        {"id": "plus_year", "name": "Plus yearly", "credits_per_month": 200, "interval": "year",
         "price_cents": 9900, "apple_product_id": "com.example.plus"},
    ],
}  # fmt: skip


def as_user(user: str) -> dict[str, str]:
    return {**SERVICE, "X-User-ID": user}


async def test_products_are_public_with_the_credits_each_grants(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/billing/products")
    assert response.status_code == 200, response.text
    products = {p["id"]: p for p in response.json()["products"]}
    assert products["credits_100"]["type"] == "credit_pack"
    assert products["credits_100"]["credits"] == 100
    assert products["credits_100"]["credits_per_month"] is None
    yearly = products["pro_yearly"]
    assert (yearly["type"], yearly["interval"]) == ("subscription", "year")
    assert yearly["credits"] == yearly["credits_per_month"] == 1000


async def test_the_catalogue_comes_from_configuration(make_client: ClientFactory) -> None:
    client = await make_client(billing_products=CATALOGUE)
    response = await client.get("/api/v1/billing/products")
    assert response.json()["products"] == [
        {
            "id": "pack_10", "type": "credit_pack", "name": "Ten", "credits": 10,
            "credits_per_month": None, "interval": None, "price_cents": 99, "currency": "eur",
            "apple_product_id": "com.example.pack10", "stripe_price_id": "price_10",
        },
        {
            "id": "plus_year", "type": "subscription", "name": "Plus yearly", "credits": 200,
            "credits_per_month": 200, "interval": "year", "price_cents": 9900, "currency": "usd",
            "apple_product_id": "com.example.plus", "stripe_price_id": None,
        },
    ]  # fmt: skip


def test_billing_products_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_PRODUCTS", json.dumps(CATALOGUE))
    settings = Settings(_env_file=None)
    assert settings.billing_products is not None
    assert settings.billing_products.subscriptions[0].credits_per_month == 200


@pytest.mark.parametrize(
    "catalogue",
    [
        {"credit_packs": [CATALOGUE["credit_packs"][0], CATALOGUE["credit_packs"][0]]},
        {"credit_packs": [{**CATALOGUE["credit_packs"][0], "credits": 0}]},
        {"subscriptions": [{**CATALOGUE["subscriptions"][0], "interval": "week"}]},
    ],
    ids=["duplicate_id", "no_credits", "bad_interval"],
)
def test_a_bad_catalogue_is_refused(catalogue: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, billing_products=catalogue)


async def test_status_of_a_new_user(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "newcomer")
    response = await client.get("/api/v1/billing/status", headers=as_user(user))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "user_id": user,
        "balance": 50,
        "lifetime_earned": 50,
        "lifetime_spent": 0,
        "subscription_tier": "free",
        "status": "none",
        "subscription": None,
        "recent_purchases": [],
        "flag": None,
    }


async def test_status_needs_a_user(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/billing/status"), 401, "authentication_required")
    assert_error(
        await client.get("/api/v1/billing/status", headers=SERVICE), 401, "authentication_required"
    )


async def test_status_shows_a_stripe_subscription(client: httpx.AsyncClient) -> None:
    user = await resolve(client, "stripe-subscriber")
    period_end = datetime.now(UTC) + timedelta(days=20)
    app = app_of(client)
    async with app.state.database.session() as session:
        session.add(
            Subscription(
                project_id=app.state.identity.home_project_id,
                user_id=uuid.UUID(user),
                stripe_subscription_id="sub_123",
                plan="pro_monthly",
                status="active",
                current_period_end=period_end,
            )
        )
    body = (await client.get("/api/v1/billing/status", headers=as_user(user))).json()
    assert body["subscription"]["provider"] == "stripe"
    assert body["subscription"]["product_id"] == "pro_monthly"
    assert body["subscription"]["status"] == "active"
    # Top level, as timepoint-mcp's tier resolver reads it.
    assert (body["subscription_tier"], body["status"]) == ("pro", "active")
