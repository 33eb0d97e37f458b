"""Home-project Stripe purchases through HTTP against the local Stripe peer: checkout on the
operator's own account, exactly-once grants from signed webhooks, renewals, yearly plans
granting monthly, refunds that never go negative, and who may call."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from platform_fixtures import end_user, new_project
from stripe_peer import StripePeer
from support import (
    ADMIN_KEY,
    SERVICE,
    ClientFactory,
    app_of,
    assert_error,
    ledger_rows,
    resolve,
)
from tollhouse.billing.apple.renewals import add_months
from tollhouse.billing.gateway import stripe_purchases
from tollhouse.billing.gateway.products import Catalogue
from tollhouse.billing.models import Subscription
from tollhouse.ledger.models import CreditTransaction

pytestmark = pytest.mark.anyio

WHSEC = "whsec_live_0123456789"
BILLING_KEY = "test-billing-key-0123456789abcdefghijklmn"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
SIGNUP = 50
URLS = {"success_url": "https://app.example/ok", "cancel_url": "https://app.example/no"}


@dataclass
class Home:
    client: httpx.AsyncClient
    peer: StripePeer
    prices: dict[str, str]

    def headers(self, user: str) -> dict[str, str]:
        return {**SERVICE, "X-User-ID": user}

    async def checkout(self, user: str, product_id: str) -> httpx.Response:
        return await self.client.post(
            "/api/v1/billing/stripe/checkout",
            json={"product_id": product_id, **URLS},
            headers=self.headers(user),
        )

    async def deliver(self, event: dict[str, Any]) -> httpx.Response:
        response = await self.peer.deliver(self.client, event, WHSEC)
        assert response.status_code == 200, response.text
        return response

    async def buy(self, user: str, product_id: str) -> dict[str, Any]:
        """Check out, pay at the peer, deliver checkout.session.completed; the event."""
        response = await self.checkout(user, product_id)
        assert response.status_code == 200, response.text
        paid = self.peer.complete_session(response.json()["session_id"])
        event = self.peer.event("checkout.session.completed", paid)
        assert (await self.deliver(event)).json() == {"received": True}
        return event

    async def status(self, user: str) -> dict[str, Any]:
        response = await self.client.get("/api/v1/billing/status", headers=self.headers(user))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def grants(self, type_: str) -> list[CreditTransaction]:
        return await ledger_rows(self.client, type_)

    async def audit_clean(self) -> None:
        response = await self.client.get("/api/v1/credits/admin/audit", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["ok"] is True, response.json()


@pytest.fixture
async def home(make_client: ClientFactory, stripe_peer: StripePeer) -> Home:
    prices = {
        "pack": stripe_peer.add_price(499),
        "month": stripe_peer.add_price(1499, interval="month"),
        "year": stripe_peer.add_price(14999, interval="year"),
    }
    catalogue = {
        "credit_packs": [
            {"id": "pack_100", "name": "100 credits", "credits": 100, "price_cents": 499,
             "stripe_price_id": prices["pack"]},
            {"id": "pack_apple", "name": "Apple only", "credits": 10, "price_cents": 99,
             "apple_product_id": "com.example.apple"},
        ],
        "subscriptions": [
            {"id": "plus_month", "name": "Plus", "credits_per_month": 300, "interval": "month",
             "price_cents": 1499, "stripe_price_id": prices["month"]},
            {"id": "plus_year", "name": "Plus yearly", "credits_per_month": 200,
             "interval": "year", "price_cents": 14999, "stripe_price_id": prices["year"]},
        ],
    }  # fmt: skip
    client = await make_client(
        stripe_secret_key_live="sk_live_operator",
        stripe_webhook_secret_live=WHSEC,
        stripe_api_base=stripe_peer.base_url,
        stripe_max_network_retries=0,
        billing_products=catalogue,
        billing_api_key=BILLING_KEY,
    )
    return Home(client, stripe_peer, prices)


async def test_pack_checkout_is_on_the_operators_account_at_the_catalogue_price(
    home: Home,
) -> None:
    user = await resolve(home.client, "pack-buyer")
    response = await home.checkout(user, "pack_100")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"].endswith(body["session_id"])
    [sent] = home.peer.posted("/v1/checkout/sessions")
    assert sent.account is None  # no Stripe-Account header: the operator's own account
    assert sent.api_key == "sk_live_operator"
    assert sent.form["mode"] == "payment"
    assert sent.form["line_items"] == [{"price": home.prices["pack"], "quantity": "1"}]
    assert sent.form["client_reference_id"] == user
    home_project = app_of(home.client).state.identity.home_project_id
    assert sent.form["metadata"] == {
        "projectId": home_project,
        "userId": user,
        "productId": "pack_100",
    }


async def test_subscription_checkout_uses_the_plans_price(home: Home) -> None:
    user = await resolve(home.client, "plan-buyer")
    response = await home.checkout(user, "plus_month")
    assert response.status_code == 200, response.text
    [sent] = home.peer.posted("/v1/checkout/sessions")
    assert sent.account is None
    assert sent.form["mode"] == "subscription"
    assert sent.form["line_items"] == [{"price": home.prices["month"], "quantity": "1"}]
    assert sent.form["subscription_data"]["metadata"]["productId"] == "plus_month"


async def test_unknown_unpurchasable_and_bad_urls_are_refused(home: Home) -> None:
    user = await resolve(home.client, "picky")
    assert_error(await home.checkout(user, "nope"), 400, "unknown_product")
    assert_error(await home.checkout(user, "pack_apple"), 400, "product_not_purchasable")
    bad = await home.client.post(
        "/api/v1/billing/stripe/checkout",
        json={"product_id": "pack_100", "success_url": "javascript:alert(1)"},
        headers=home.headers(user),
    )
    assert_error(bad, 400, "url_not_allowed")
    assert home.peer.posted("/v1/checkout/sessions") == []


async def test_stripe_not_configured_is_503(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    price = stripe_peer.add_price(499)
    client = await make_client(
        billing_products={
            "credit_packs": [
                {"id": "p", "name": "P", "credits": 1, "price_cents": 1, "stripe_price_id": price}
            ]
        }
    )
    user = await resolve(client, "early")
    response = await client.post(
        "/api/v1/billing/stripe/checkout",
        json={"product_id": "p", **URLS},
        headers={**SERVICE, "X-User-ID": user},
    )
    assert_error(response, 503, "stripe_not_configured")


async def test_a_completed_pack_grants_once_however_often_it_lands(home: Home) -> None:
    user = await resolve(home.client, "thrice")
    event = await home.buy(user, "pack_100")
    assert (await home.deliver(event)).json() == {"received": True, "idempotent": True}
    # Another event about the same session (a different id) grants nothing more.
    again = home.peer.event("checkout.session.completed", event["data"]["object"])
    assert (await home.deliver(again)).json() == {"received": True}
    [grant] = await home.grants("stripe_purchase")
    assert grant.amount == 100
    assert grant.idempotency_key == f"stripe:{event['data']['object']['id']}"
    body = await home.status(user)
    assert body["balance"] == SIGNUP + 100
    assert body["recent_purchases"][0]["type"] == "stripe_purchase"
    await home.audit_clean()


async def test_a_subscription_stores_its_row_and_grants_monthly(home: Home) -> None:
    user = await resolve(home.client, "subscriber")
    event = await home.buy(user, "plus_month")
    sub_id = home.peer.find(event["data"]["object"]["id"])[1]["subscription"]
    async with app_of(home.client).state.database.session() as session:
        row = await session.scalar(select(Subscription))
    assert row is not None
    assert (row.stripe_subscription_id, row.plan, row.status) == (sub_id, "plus_month", "active")
    assert row.user_id == uuid.UUID(user)
    assert (await home.status(user))["balance"] == SIGNUP + 300
    assert (await home.status(user))["subscription"]["product_id"] == "plus_month"

    # The first invoice is covered by the checkout grant; a renewal grants its month, once.
    def invoice(reason: str) -> dict[str, Any]:
        return {
            "id": f"in_{uuid.uuid4().hex[:12]}",
            "object": "invoice",
            "billing_reason": reason,
            "parent": {"subscription_details": {"subscription": sub_id, "metadata": {}}},
        }

    await home.deliver(home.peer.event("invoice.paid", invoice("subscription_create")))
    renewal = invoice("subscription_cycle")
    first = home.peer.event("invoice.paid", renewal)
    await home.deliver(first)
    assert (await home.deliver(first)).json()["idempotent"] is True
    await home.deliver(home.peer.event("invoice.paid", renewal))  # the same invoice, new event
    keys = [g.idempotency_key for g in await home.grants("subscription_grant")]
    assert keys == [f"stripe:{sub_id}:first", f"stripe:{sub_id}:{renewal['id']}"]
    assert (await home.status(user))["balance"] == SIGNUP + 600

    portal = await home.client.get(
        "/api/v1/billing/stripe/portal",
        params={"return_url": "https://app.example/account"},
        headers=home.headers(user),
    )
    assert portal.status_code == 200, portal.text
    [sent] = home.peer.posted("/v1/billing_portal/sessions")
    assert sent.account is None
    assert sent.form["customer"] == row.stripe_customer_id
    await home.audit_clean()


async def test_portal_needs_a_stripe_customer(home: Home) -> None:
    user = await resolve(home.client, "no-customer")
    response = await home.client.get("/api/v1/billing/stripe/portal", headers=home.headers(user))
    assert_error(response, 400, "no_billing_account")


async def test_a_yearly_plan_grants_every_month_once(home: Home) -> None:
    user = await resolve(home.client, "yearly")
    event = await home.buy(user, "plus_year")
    sub_id = home.peer.find(event["data"]["object"]["id"])[1]["subscription"]
    end = datetime.now(UTC) + timedelta(days=300)
    async with app_of(home.client).state.database.session() as session:
        row = await session.scalar(select(Subscription))
        assert row is not None
        row.current_period_end = end
    start = add_months(end, -12)
    now = add_months(start, 3) + timedelta(days=1)  # months 2, 3 and 4 have started
    database = app_of(home.client).state.database
    catalogue = Catalogue.from_settings(app_of(home.client).state.identity.settings)

    async def run() -> int:
        async with database.session() as session:
            return await stripe_purchases.grant_due_months(session, catalogue, now)

    await asyncio.gather(run(), run())
    await run()
    keys = [g.idempotency_key for g in await home.grants("subscription_grant")]
    expected = [f"stripe:{sub_id}:{add_months(start, m):%Y-%m}" for m in (1, 2, 3)]
    assert keys == [f"stripe:{sub_id}:first", *expected]
    assert (await home.status(user))["balance"] == SIGNUP + 4 * 200
    await home.audit_clean()


async def test_a_refund_after_spending_takes_what_it_can(home: Home) -> None:
    user = await resolve(home.client, "refunder")
    event = await home.buy(user, "pack_100")
    spent = await home.client.post(
        "/internal/credits/spend",
        json={"user_id": user, "cost": 140},
        headers={"X-Service-Key": BILLING_KEY},
    )
    assert spent.status_code == 200, spent.text  # balance 10
    charge = home.peer.refunded_charge(event["data"]["object"]["id"])
    refund = home.peer.event("charge.refunded", charge)
    await home.deliver(refund)
    assert (await home.deliver(refund)).json()["idempotent"] is True
    await home.deliver(home.peer.event("charge.refunded", charge))  # another event, same charge
    body = await home.status(user)
    assert body["balance"] == 0
    assert body["flag"]["unrecovered_credits"] == 90
    [taken] = await home.grants("refund")
    assert taken.amount == -10
    await home.audit_clean()


async def test_platform_end_users_cannot_use_home_billing(home: Home) -> None:
    keys = await new_project(home.client)
    for headers in (await end_user(home.client, keys), keys.secret, keys.publishable):
        checkout = await home.client.post(
            "/api/v1/billing/stripe/checkout", json={"product_id": "pack_100"}, headers=headers
        )
        portal = await home.client.get("/api/v1/billing/stripe/portal", headers=headers)
        assert checkout.status_code in (401, 403), checkout.text
        assert portal.status_code in (401, 403), portal.text
    assert home.peer.posted("/v1/checkout/sessions") == []
