"""The platform subscription through HTTP against the local Stripe peer: checkout on the
operator's account, webhook → status, the 403 `subscription_expired` gate and its grace, the
feature off, and `GET /console/api/v1/plan`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from stripe_peer import StripePeer
from support import ClientFactory, PinnedClock, app_of, assert_error, pin_caller_cache_clock
from test_billing_stripe import API, WHSEC, signup, stripe_settings
from tollhouse.kit.clock import utcnow
from tollhouse.tenancy.models import Platform

pytestmark = pytest.mark.anyio

DAY = 86400


def _operator_prices(peer: StripePeer) -> dict[str, str]:
    """The operator's plan prices, made on the peer's own (not a connected) account."""
    auth = {"Authorization": "Bearer sk_test_operator"}
    with httpx.Client(base_url=peer.base_url, headers=auth) as http:
        product = http.post("/v1/products", data={"name": "Tollhouse platform"}).json()["id"]
        base = http.post(
            "/v1/prices",
            data={
                "product": product,
                "unit_amount": 1900,
                "currency": "usd",
                "recurring[interval]": "month",
            },
        ).json()["id"]
        overage = http.post(
            "/v1/prices",
            data={
                "product": product,
                "unit_amount": 3,
                "currency": "usd",
                "recurring[interval]": "month",
            },
        ).json()["id"]
    return {"platform_price_id": base, "platform_overage_price_id": overage}


@dataclass
class Dev:
    client: httpx.AsyncClient
    peer: StripePeer
    auth: dict[str, str]
    pk: str
    sk: str
    project_id: str

    @property
    def publishable(self) -> dict[str, str]:
        return {"X-Publishable-Key": self.pk}

    @property
    def secret(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sk}"}

    async def deliver(self, event: dict[str, Any]) -> httpx.Response:
        return await self.peer.deliver(self.client, event, WHSEC)

    async def subscribe(self) -> str:
        """Checkout, pay at the peer, deliver checkout.session.completed; the subscription id."""
        response = await self.client.post(f"{API}/plan/checkout", headers=self.auth)
        assert response.status_code == 200, response.text
        paid = self.peer.complete_session(response.json()["url"].rsplit("/", 1)[1])
        delivered = await self.deliver(self.peer.event("checkout.session.completed", paid))
        assert delivered.json() == {"received": True}, delivered.text
        return str(paid["subscription"])

    async def change(self, sub_id: str, event_type: str, **fields: Any) -> None:
        sub = self.peer.update_subscription(sub_id, **fields)
        delivered = await self.deliver(self.peer.event(event_type, sub))
        assert delivered.status_code == 200, delivered.text

    async def plan(self) -> dict[str, Any]:
        response = await self.client.get(f"{API}/plan", headers=self.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def api_status(self) -> tuple[int, int]:
        """(GET /api/tiers with the PK, GET /api/dashboard with the SK)."""
        tiers = await self.client.get("/api/tiers", headers=self.publishable)
        dashboard = await self.client.get("/api/dashboard", headers=self.secret)
        return tiers.status_code, dashboard.status_code

    async def set_platform(self, **values: Any) -> None:
        async with app_of(self.client).state.database.session() as session:
            await session.execute(update(Platform).values(**values).where(~Platform.is_home))


async def _dev(client: httpx.AsyncClient, peer: StripePeer, mode: str = "live") -> Dev:
    auth = await signup(client)
    created = await client.post(
        f"{API}/projects", json={"name": "Acme", "type": "saas", "mode": mode}, headers=auth
    )
    assert created.status_code == 201, created.text
    body = created.json()
    return Dev(
        client, peer, auth, body["publishable_key"], body["secret_key"], body["project"]["id"]
    )


@pytest.fixture
async def dev(make_client: ClientFactory, stripe_peer: StripePeer) -> Dev:
    settings = {
        **stripe_settings(stripe_peer),
        **_operator_prices(stripe_peer),
        "platform_stripe_mode": "test",
        "caller_cache_seconds": 0,
    }
    return await _dev(await make_client(**settings), stripe_peer)


def _ending(sub: dict[str, Any], at: int) -> dict[str, Any]:
    """The subscription's items with their period ending at `at`."""
    items = [{**item, "current_period_end": at} for item in sub["items"]["data"]]
    return {"object": "list", "data": items}


async def test_checkout_is_the_operators_plan_with_a_trial(dev: Dev) -> None:
    response = await dev.client.post(f"{API}/plan/checkout", headers=dev.auth)
    assert response.status_code == 200, response.text
    (sent,) = dev.peer.posted("/v1/checkout/sessions")
    assert sent.account is None  # no Stripe-Account: the operator's own account
    assert sent.api_key == "sk_test_operator"
    assert sent.form["mode"] == "subscription"
    prices = [item["price"] for item in sent.form["line_items"]]
    settings = app_of(dev.client).state.identity.settings
    assert prices == [settings.platform_price_id, settings.platform_overage_price_id]
    assert "quantity" not in sent.form["line_items"][1]  # metered
    assert sent.form["subscription_data"]["trial_period_days"] == "14"
    assert sent.form["metadata"]["kind"] == "platform"
    platform_id = sent.form["metadata"]["platformId"]
    assert sent.form["client_reference_id"] == platform_id
    assert sent.form["customer_email"] == "dev@example.com"
    assert sent.form["success_url"] == "http://tollhouse.test/console/?plan=success"


async def test_webhook_makes_the_plan_trialing_then_active_and_opens_the_portal(dev: Dev) -> None:
    assert (await dev.plan())["status"] == "none"
    assert_error(
        await dev.client.post(f"{API}/plan/portal", headers=dev.auth), 400, "no_subscription"
    )
    sub_id = await dev.subscribe()
    plan = await dev.plan()
    assert plan["status"] == "trialing"
    assert plan["trialEndsAt"] is not None
    assert plan["currentPeriodEnd"] is not None
    await dev.change(sub_id, "customer.subscription.updated", status="active")
    assert (await dev.plan())["status"] == "active"
    assert await dev.api_status() == (200, 200)
    # Already subscribed: a second checkout is refused.
    again = await dev.client.post(f"{API}/plan/checkout", headers=dev.auth)
    assert_error(again, 409, "plan_already_active")
    portal = await dev.client.post(
        f"{API}/plan/portal", json={"returnUrl": "https://console.example/"}, headers=dev.auth
    )
    assert portal.status_code == 200, portal.text
    (sent,) = dev.peer.posted("/v1/billing_portal/sessions")
    assert sent.account is None
    assert sent.form["return_url"] == "https://console.example/"


async def test_the_same_event_twice_has_one_effect_and_order_does_not_matter(dev: Dev) -> None:
    sub_id = await dev.subscribe()
    dev.peer.update_subscription(sub_id, status="active")
    stale = dev.peer.event(
        "customer.subscription.updated",
        {"id": sub_id, "status": "trialing", "metadata": {"kind": "platform"}},
    )
    # A stale event (no platformId in its copy) changes nothing; Stripe is re-read anyway.
    assert (await dev.deliver(stale)).status_code == 200
    event = dev.peer.event("customer.subscription.updated", dev.peer.find(sub_id)[1])
    assert (await dev.deliver(event)).json() == {"received": True}
    assert (await dev.deliver(event)).json() == {"received": True, "idempotent": True}
    assert (await dev.plan())["status"] == "active"


async def test_canceled_keeps_working_through_the_grace_then_403(dev: Dev) -> None:
    sub_id = await dev.subscribe()
    sub = dev.peer.find(sub_id)[1]
    now = int(time.time())
    # Canceled, period ended 3 days ago: within the 7-day grace.
    await dev.change(
        sub_id,
        "customer.subscription.deleted",
        status="canceled",
        items=_ending(sub, now - 3 * DAY),
    )
    plan = await dev.plan()
    assert plan["status"] == "canceled"
    assert plan["currentPeriodEnd"] is not None
    assert await dev.api_status() == (200, 200)
    # Period ended 8 days ago: past the grace.
    await dev.change(sub_id, "customer.subscription.updated", items=_ending(sub, now - 8 * DAY))
    tiers = await dev.client.get("/api/tiers", headers=dev.publishable)
    assert_error(tiers, 403, "subscription_expired")
    dashboard = await dev.client.get("/api/dashboard", headers=dev.secret)
    assert_error(dashboard, 403, "subscription_expired")
    # The console still works, and the developer can subscribe again (no second trial).
    again = await dev.client.post(f"{API}/plan/checkout", headers=dev.auth)
    assert again.status_code == 200, again.text
    sent = dev.peer.posted("/v1/checkout/sessions")[-1]
    assert "trial_period_days" not in sent.form["subscription_data"]


async def test_past_due_is_allowed(dev: Dev) -> None:
    sub_id = await dev.subscribe()
    sub = dev.peer.find(sub_id)[1]
    past = int(time.time()) - 30 * DAY
    await dev.change(
        sub_id, "customer.subscription.updated", status="past_due", items=_ending(sub, past)
    )
    assert (await dev.plan())["status"] == "past_due"
    assert await dev.api_status() == (200, 200)


async def test_never_subscribed_is_allowed_during_the_trial_window_only(dev: Dev) -> None:
    assert await dev.api_status() == (200, 200)
    await dev.set_platform(created_at=utcnow() - timedelta(days=14 + 7, minutes=1))
    tiers = await dev.client.get("/api/tiers", headers=dev.publishable)
    assert_error(tiers, 403, "subscription_expired")


async def test_the_gate_reaches_a_cached_key_within_the_cache_window(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    settings = {**stripe_settings(stripe_peer), **_operator_prices(stripe_peer)}
    client = await make_client(**settings, platform_stripe_mode="test", caller_cache_seconds=0.3)
    dev = await _dev(client, stripe_peer)
    clock = PinnedClock(time.time())
    pin_caller_cache_clock(client, clock)
    assert await dev.api_status() == (200, 200)  # cached now
    await dev.set_platform(plan_status="canceled", current_period_end=utcnow() - timedelta(days=8))
    assert await dev.api_status() == (200, 200)  # at most the window
    clock.now += 0.35
    assert await dev.api_status() == (403, 403)


async def test_feature_off_never_gates_and_offers_no_plan(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    client = await make_client(**stripe_settings(stripe_peer), caller_cache_seconds=0)
    dev = await _dev(client, stripe_peer)
    await dev.set_platform(
        plan_status="canceled",
        current_period_end=utcnow() - timedelta(days=100),
        created_at=utcnow() - timedelta(days=100),
    )
    assert await dev.api_status() == (200, 200)
    checkout = await client.post(f"{API}/plan/checkout", headers=dev.auth)
    assert_error(checkout, 409, "plan_not_offered")
    assert not stripe_peer.posted("/v1/checkout/sessions")
    assert (await dev.plan())["offered"] is False


async def test_plan_numbers_count_live_end_users_only(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    settings = {
        **stripe_settings(stripe_peer),
        **_operator_prices(stripe_peer),
        "platform_stripe_mode": "test",
        "platform_included_end_users": 2,
    }
    dev = await _dev(await make_client(**settings), stripe_peer)
    test_project = await dev.client.post(
        f"{API}/projects", json={"name": "Acme", "type": "saas", "mode": "test"}, headers=dev.auth
    )
    test_sk = {"Authorization": f"Bearer {test_project.json()['secret_key']}"}
    for n in range(5):
        made = await dev.client.post(
            "/api/customers", json={"email": f"u{n}@example.com"}, headers=dev.secret
        )
        assert made.status_code == 201, made.text
    made = await dev.client.post("/api/customers", json={"email": "t@example.com"}, headers=test_sk)
    assert made.status_code == 201, made.text
    plan = await dev.plan()
    assert plan == {
        "status": "none",
        "offered": True,
        "trialEndsAt": None,
        "currentPeriodEnd": None,
        "liveEndUserCount": 5,
        "includedUsers": 2,
        "overageRate": 0.03,
        "estimatedOverage": 0.09,
    }
