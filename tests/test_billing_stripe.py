"""Stripe through HTTP against the local Stripe peer: Connect, catalog sync, checkout, portal,
webhooks (signature, inbox dedupe, out-of-order events), the effective plan, the dashboard."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from platform_fixtures import new_project
from stripe_peer import StripePeer
from support import PEPPER, ClientFactory, app_of, assert_error
from tollhouse.billing.models import InboxEvent, OAuthState, StripeConnection, Subscription
from tollhouse.catalog.models import Tier
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import decrypt

pytestmark = pytest.mark.anyio
# The local Stripe peer's fixtures (`stripe_peer`, `stripe_peer_server`).

API = "/console/api/v1"
WHSEC = "whsec_test_0123456789"
SUCCESS = {"successUrl": "https://app.example/ok", "cancelUrl": "https://app.example/no"}
TIERS: list[dict[str, Any]] = [
    {"name": "free", "display_name": "Free", "limit": 3},
    {"name": "pro", "display_name": "Pro", "price_cents": 2900, "limit": 10, "trial_days": 7},
    {"name": "max", "display_name": "Max", "price_cents": 9900, "limit": "unlimited"},
]


def stripe_settings(peer: StripePeer, **more: Any) -> dict[str, Any]:
    return {
        "stripe_secret_key_test": "sk_test_operator",
        "stripe_webhook_secret_test": WHSEC,
        "stripe_connect_client_id_test": "ca_test_123",
        "stripe_api_base": peer.base_url,
        "stripe_connect_base": peer.base_url,
        "stripe_max_network_retries": 0,
        **more,
    }


@dataclass
class Shop:
    client: httpx.AsyncClient
    peer: StripePeer
    auth: dict[str, str]
    account: str
    project_id: str
    secret: dict[str, str]
    publishable: str
    user_id: str
    user: dict[str, str]

    async def rows(self, model: Any) -> list[Any]:
        async with app_of(self.client).state.database.session() as session:
            return list(await session.scalars(select(model)))

    async def tier(self, slug: str) -> Tier:
        async with app_of(self.client).state.database.session() as session:
            found = await session.scalar(
                select(Tier).where(Tier.project_id == self.project_id, Tier.slug == slug)
            )
            assert found is not None
            return found

    async def deliver(self, event: dict[str, Any]) -> httpx.Response:
        return await self.peer.deliver(self.client, event, WHSEC)

    async def buy(self, tier: str = "pro") -> dict[str, Any]:
        """Check out, pay at the peer, deliver checkout.session.completed; the event."""
        response = await self.client.post(
            "/api/create-checkout", json={"tier": tier, **SUCCESS}, headers=self.user
        )
        assert response.status_code == 200, response.text
        session_id = response.json()["url"].rsplit("/", 1)[1]
        paid = self.peer.complete_session(session_id)
        event = self.peer.event("checkout.session.completed", paid, account=self.account)
        delivered = await self.deliver(event)
        assert delivered.status_code == 200, delivered.text
        assert delivered.json() == {"received": True}
        return event

    async def track(self) -> httpx.Response:
        return await self.client.post("/api/data", json={}, headers=self.user)


async def signup(client: httpx.AsyncClient, email: str = "dev@example.com") -> dict[str, str]:
    body = {"email": email, "password": "correct horse battery"}
    response = await client.post(f"{API}/auth/signup", json=body)
    assert response.status_code == 201, response.text
    client.cookies.clear()
    return {"Cookie": f"tollhouse_session={response.json()['token']}"}


async def connect(client: httpx.AsyncClient, peer: StripePeer, auth: dict[str, str]) -> str:
    start = await client.get(f"{API}/stripe/connect", params={"mode": "test"}, headers=auth)
    assert start.status_code == 302, start.text
    location = urlsplit(start.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}" == peer.base_url
    assert location.path == "/oauth/authorize"
    assert query["client_id"] == ["ca_test_123"]
    assert query["scope"] == ["read_write"]
    assert query["redirect_uri"][0].endswith("/console/api/v1/stripe/callback")
    code, account = peer.issue_code()
    done = await client.get(
        f"{API}/stripe/callback", params={"code": code, "state": query["state"][0]}, headers=auth
    )
    assert done.status_code == 302, done.text
    return account


@pytest.fixture
async def shop(make_client: ClientFactory, stripe_peer: StripePeer) -> Shop:
    client = await make_client(**stripe_settings(stripe_peer))
    auth = await signup(client)
    account = await connect(client, stripe_peer, auth)
    created = await client.post(
        f"{API}/projects", json={"name": "Acme", "type": "saas"}, headers=auth
    )
    assert created.status_code == 201, created.text
    project_id = created.json()["project"]["id"]
    for tier in TIERS:
        made = await client.post(f"{API}/projects/{project_id}/tiers", json=tier, headers=auth)
        assert made.status_code == 201, made.text
    secret = {"Authorization": f"Bearer {created.json()['secret_key']}"}
    pk = created.json()["publishable_key"]
    customer = await client.post("/api/customers", json={"email": "u@example.com"}, headers=secret)
    assert customer.status_code == 201, customer.text
    user_id = customer.json()["customer"]["id"]
    minted = await client.post(f"/api/customers/{user_id}/token", headers=secret)
    user = {"X-Publishable-Key": pk, "X-Clerk-Token": minted.json()["token"]}
    return Shop(client, stripe_peer, auth, account, project_id, secret, pk, user_id, user)


# --- Connect --------------------------------------------------------------------------------


async def test_connect_stores_encrypted_tokens_and_state_is_single_use(shop: Shop) -> None:
    [row] = await shop.rows(StripeConnection)
    assert row.account_id == shop.account
    stored = f"{row.access_token_encrypted} {row.refresh_token_encrypted}"
    assert shop.peer.issued_tokens
    for token in shop.peer.issued_tokens:
        assert token not in stored
    assert decrypt(PEPPER, row.access_token_encrypted or "") == shop.peer.issued_tokens[0]
    [oauth] = shop.peer.posted("/oauth/token")
    assert oauth.api_key == "sk_test_operator"
    assert oauth.form["grant_type"] == "authorization_code"

    status = await shop.client.get(f"{API}/stripe", headers=shop.auth)
    assert status.status_code == 200
    test = status.json()["modes"]["test"]
    assert (test["connected"], test["accountId"]) == (True, shop.account)
    assert not status.json()["modes"]["live"]["connected"]
    assert "sk_test_oauth" not in status.text

    # The state was consumed: replaying the callback is refused.
    [state] = await shop.rows(OAuthState)
    assert state.used_at is not None
    start = await shop.client.get(f"{API}/stripe/connect?mode=test", headers=shop.auth)
    fresh = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    code, _ = shop.peer.issue_code()
    params = {"code": code, "state": fresh}
    assert (
        await shop.client.get(f"{API}/stripe/callback", params=params, headers=shop.auth)
    ).status_code == 302
    code, _ = shop.peer.issue_code()
    replay = await shop.client.get(
        f"{API}/stripe/callback", params={"code": code, "state": fresh}, headers=shop.auth
    )
    assert_error(replay, 400, "invalid_oauth_state")

    # An expired state is refused, and so is another developer's.
    start = await shop.client.get(f"{API}/stripe/connect?mode=test", headers=shop.auth)
    late = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    async with app_of(shop.client).state.database.session() as session:
        await session.execute(
            update(OAuthState)
            .where(OAuthState.used_at.is_(None))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = await shop.client.get(
        f"{API}/stripe/callback", params={"code": code, "state": late}, headers=shop.auth
    )
    assert_error(expired, 400, "invalid_oauth_state")
    other = await signup(shop.client, "other@example.com")
    start = await shop.client.get(f"{API}/stripe/connect?mode=test", headers=shop.auth)
    theirs = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    stolen = await shop.client.get(
        f"{API}/stripe/callback", params={"code": code, "state": theirs}, headers=other
    )
    assert_error(stolen, 400, "invalid_oauth_state")

    gone = await shop.client.delete(f"{API}/stripe?mode=test", headers=shop.auth)
    assert gone.status_code == 204
    status = await shop.client.get(f"{API}/stripe", headers=shop.auth)
    assert not status.json()["modes"]["test"]["connected"]


async def test_console_tiers_sync_to_the_connected_account(shop: Shop) -> None:
    pro = await shop.tier("pro")
    free = await shop.tier("free")
    assert pro.stripe_product_id
    assert pro.stripe_price_id
    assert free.stripe_product_id
    assert free.stripe_price_id is None
    [price] = [r for r in shop.peer.posted("/v1/prices") if r.form["unit_amount"] == "2900"]
    assert price.account == shop.account
    assert price.form["recurring"] == {"interval": "month"}

    changed = await shop.client.patch(
        f"{API}/projects/{shop.project_id}/tiers/pro", json={"price_cents": 3900}, headers=shop.auth
    )
    assert changed.status_code == 200, changed.text
    repriced = await shop.tier("pro")
    assert repriced.stripe_price_id not in (None, pro.stripe_price_id)
    [old] = shop.peer.posted(f"/v1/prices/{pro.stripe_price_id}")
    assert old.form == {"active": "false"}
    assert old.account == shop.account


# --- checkout and portal --------------------------------------------------------------------


async def test_checkout_charges_the_tiers_own_price(shop: Shop) -> None:
    pro = await shop.tier("pro")
    response = await shop.client.post(
        "/api/create-checkout",
        json={"tier": "Pro", "priceId": pro.stripe_price_id, **SUCCESS},
        headers=shop.user,
    )
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith(shop.peer.base_url)
    [sent] = shop.peer.posted("/v1/checkout/sessions")
    assert sent.account == shop.account
    assert sent.api_key == "sk_test_operator"
    form = sent.form
    assert form["mode"] == "subscription"
    assert form["line_items"] == [{"price": pro.stripe_price_id, "quantity": "1"}]
    assert form["subscription_data"]["trial_period_days"] == "7"
    assert form["metadata"] == {
        "userId": shop.user_id,
        "tier": "pro",
        "projectId": shop.project_id,
        "publishableKey": shop.publishable,
    }
    assert form["subscription_data"]["metadata"] == form["metadata"]
    users = await shop.client.get(f"/api/customers/{shop.user_id}", headers=shop.secret)
    assert users.status_code == 200
    assert form["customer_email"] == "u@example.com"
    assert form["client_reference_id"]
    assert (form["success_url"], form["cancel_url"]) == (
        SUCCESS["successUrl"],
        SUCCESS["cancelUrl"],
    )


async def test_checkout_refusals_reach_stripe_never(shop: Shop) -> None:
    post = shop.client.post
    cheap = await post(
        "/api/create-checkout",
        json={"tier": "max", "priceId": "price_cheap", **SUCCESS},
        headers=shop.user,
    )
    assert_error(cheap, 400, "price_mismatch")
    pro = await shop.tier("pro")
    swapped = await post(
        "/api/create-checkout",
        json={"tier": "max", "priceId": pro.stripe_price_id, **SUCCESS},
        headers=shop.user,
    )
    assert_error(swapped, 400, "price_mismatch")
    free = await post("/api/create-checkout", json={"tier": "free", **SUCCESS}, headers=shop.user)
    assert_error(free, 400, "tier_not_purchasable")
    unknown = await post(
        "/api/create-checkout", json={"tier": "gold", **SUCCESS}, headers=shop.user
    )
    assert_error(unknown, 400, "unknown_tier")
    for bad in ("javascript:alert(1)", "http://evil.example/x", "ftp://x.example"):
        refused = await post(
            "/api/create-checkout",
            json={"tier": "pro", "successUrl": bad, "cancelUrl": SUCCESS["cancelUrl"]},
            headers=shop.user,
        )
        assert_error(refused, 400, "url_not_allowed")
    no_user = await post(
        "/api/create-checkout",
        json={"tier": "pro"},
        headers={"X-Publishable-Key": shop.publishable},
    )
    assert no_user.status_code == 401
    portal = await post("/api/customer-portal", json={}, headers=shop.user)
    assert_error(portal, 400, "no_billing_account")
    assert shop.peer.posted("/v1/checkout/sessions") == []
    assert shop.peer.posted("/v1/billing_portal/sessions") == []

    # Localhost over http is fine for development; Origin gives the default URLs.
    local = await post(
        "/api/create-checkout",
        json={"tier": "pro"},
        headers={**shop.user, "Origin": "http://localhost:3000"},
    )
    assert local.status_code == 200, local.text
    assert shop.peer.posted("/v1/checkout/sessions")[0].form["success_url"] == (
        "http://localhost:3000/dashboard?success=true"
    )


async def test_checkout_without_a_connection(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    client = await make_client(**stripe_settings(stripe_peer))
    keys = await new_project(client, tiers=TIERS)
    customer = await client.post(
        "/api/customers", json={"email": "a@example.com"}, headers=keys.secret
    )
    token = (
        await client.post(
            f"/api/customers/{customer.json()['customer']['id']}/token", headers=keys.secret
        )
    ).json()["token"]
    headers = {**keys.publishable, "X-Clerk-Token": token}
    response = await client.post(
        "/api/create-checkout", json={"tier": "pro", **SUCCESS}, headers=headers
    )
    assert_error(response, 400, "stripe_not_connected")
    assert stripe_peer.requests == []

    unconfigured = await make_client()
    keys = await new_project(unconfigured, tiers=TIERS)
    customer = await unconfigured.post(
        "/api/customers", json={"email": "b@example.com"}, headers=keys.secret
    )
    assert customer.status_code == 201
    hook = await unconfigured.post(
        "/webhook/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=x"}
    )
    assert_error(hook, 503, "webhook_not_configured")


# --- webhooks -------------------------------------------------------------------------------


async def test_bad_or_missing_signature_stores_nothing(shop: Shop) -> None:
    event = shop.peer.event("customer.created", {"id": "cus_1", "object": "customer"})
    payload, header = shop.peer.sign(event, "whsec_wrong")
    missing = await shop.client.post("/webhook/stripe", content=payload)
    assert_error(missing, 400, "invalid_signature")
    wrong = await shop.client.post(
        "/webhook/stripe", content=payload, headers={"Stripe-Signature": header}
    )
    assert_error(wrong, 400, "invalid_signature")
    payload, header = shop.peer.sign(event, WHSEC)
    tampered = await shop.client.post(
        "/webhook/stripe",
        content=payload.replace(b"cus_1", b"cus_2"),
        headers={"Stripe-Signature": header},
    )
    assert_error(tampered, 400, "invalid_signature")
    stale_payload, stale = shop.peer.sign(event, WHSEC, at=1_600_000_000)
    old = await shop.client.post(
        "/webhook/stripe", content=stale_payload, headers={"Stripe-Signature": stale}
    )
    assert_error(old, 400, "invalid_signature")
    assert await shop.rows(InboxEvent) == []

    unknown = await shop.deliver(event)
    assert unknown.status_code == 200
    assert unknown.json() == {"received": True}
    [row] = await shop.rows(InboxEvent)
    assert (row.source, row.event_id, row.type) == ("stripe", event["id"], "customer.created")


async def test_completed_checkout_changes_the_plan_once(shop: Shop) -> None:
    for _ in range(3):
        assert (await shop.track()).status_code == 200
    assert (await shop.track()).status_code == 403  # free: 3

    event = await shop.buy("pro")
    [sub] = await shop.rows(Subscription)
    assert (sub.plan, sub.status, sub.amount_cents) == ("pro", "trialing", 2900)
    assert sub.stripe_customer_id
    assert sub.stripe_customer_id.startswith("cus_")
    assert sub.project_id == shop.project_id
    used = await shop.track()
    assert used.status_code == 200, used.text
    assert used.json()["usage"]["plan"] == "pro"
    assert used.json()["usage"]["limit"] == 10
    customer = await shop.client.get(f"/api/customers/{shop.user_id}", headers=shop.secret)
    assert customer.json()["customer"]["plan"] == "pro"

    again = await shop.deliver(event)
    assert again.json() == {"received": True, "idempotent": True}
    assert len(await shop.rows(Subscription)) == 1
    assert len(await shop.rows(InboxEvent)) == 1


async def test_the_plan_comes_from_the_price_not_metadata(shop: Shop) -> None:
    response = await shop.client.post(
        "/api/create-checkout", json={"tier": "pro", **SUCCESS}, headers=shop.user
    )
    session_id = response.json()["url"].rsplit("/", 1)[1]
    paid = shop.peer.complete_session(session_id)
    paid["metadata"] = {**paid["metadata"], "tier": "max"}  # a forged claim
    await shop.deliver(shop.peer.event("checkout.session.completed", paid, account=shop.account))
    [sub] = await shop.rows(Subscription)
    assert sub.plan == "pro"

    # An event naming the project from another account is recorded, not applied.
    foreign = shop.peer.event(
        "customer.subscription.deleted",
        {
            "id": sub.stripe_subscription_id,
            "object": "subscription",
            "metadata": {"projectId": shop.project_id},
        },
        account="acct_intruder",
    )
    assert (await shop.deliver(foreign)).json() == {"received": True}
    [sub] = await shop.rows(Subscription)
    assert sub.status == "trialing"


async def test_ten_concurrent_deliveries_have_one_effect(shop: Shop) -> None:
    response = await shop.client.post(
        "/api/create-checkout", json={"tier": "pro", **SUCCESS}, headers=shop.user
    )
    paid = shop.peer.complete_session(response.json()["url"].rsplit("/", 1)[1])
    event = shop.peer.event("checkout.session.completed", paid, account=shop.account)
    retrieves_before = len(shop.peer.requests)
    answers = await asyncio.gather(*(shop.deliver(event) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    bodies = [a.json() for a in answers]
    assert bodies.count({"received": True}) == 1
    assert bodies.count({"received": True, "idempotent": True}) == 9
    assert len(await shop.rows(Subscription)) == 1
    assert len(await shop.rows(InboxEvent)) == 1
    subscription_reads = [
        r for r in shop.peer.requests[retrieves_before:] if r.path.startswith("/v1/subscriptions/")
    ]
    assert len(subscription_reads) == 1


async def test_out_of_order_events_end_in_stripes_current_state(shop: Shop) -> None:
    await shop.buy("pro")
    [sub] = await shop.rows(Subscription)
    stripe_id = sub.stripe_subscription_id
    stale = dict(shop.peer.update_subscription(stripe_id, status="active"))
    shop.peer.update_subscription(stripe_id, cancel_at_period_end=True)
    canceling = dict(shop.peer.update_subscription(stripe_id))

    # The cancel-at-period-end update lands first, then the older "active" update.
    await shop.deliver(
        shop.peer.event("customer.subscription.updated", canceling, account=shop.account)
    )
    await shop.deliver(
        shop.peer.event("customer.subscription.updated", stale, account=shop.account)
    )
    [sub] = await shop.rows(Subscription)
    assert (sub.status, sub.cancel_at_period_end) == ("active", True)
    board = (await shop.client.get("/api/dashboard", headers=shop.secret)).json()
    assert board["metrics"]["activeSubs"] == 1
    assert board["metrics"]["cancelingSubs"] == 1
    assert board["metrics"]["mrr"] == 2900
    [row] = [c for c in board["customers"] if c["userId"] == shop.user_id]
    assert (row["status"], row["plan"], row["subscriptionId"]) == ("active", "pro", stripe_id)
    assert board["webhook"]["lastEventAt"] is not None
    assert [e["type"] for e in board["webhook"]["recent"]][-1] == "checkout.session.completed"
    assert "u@example.com" not in str(board["webhook"])

    # Deleted, then a late "updated" (still saying active): canceled wins, plan back to free.
    deleted = dict(
        shop.peer.update_subscription(stripe_id, status="canceled", canceled_at=1_700_000_000)
    )
    await shop.deliver(
        shop.peer.event("customer.subscription.deleted", deleted, account=shop.account)
    )
    await shop.deliver(
        shop.peer.event("customer.subscription.updated", stale, account=shop.account)
    )
    await shop.deliver(
        shop.peer.event(
            "invoice.payment_failed",
            {"id": "in_1", "object": "invoice", "subscription": stripe_id},
            account=shop.account,
        )
    )
    [sub] = await shop.rows(Subscription)
    assert sub.status == "canceled"
    customer = await shop.client.get(f"/api/customers/{shop.user_id}", headers=shop.secret)
    assert customer.status_code == 200
    assert customer.json()["customer"]["plan"] == "free"
    usage = await shop.client.get("/api/usage", headers=shop.user)
    assert usage.status_code == 200
    assert usage.json()["plan"] == "free"
    board = (await shop.client.get("/api/dashboard", headers=shop.secret)).json()
    assert (board["metrics"]["activeSubs"], board["metrics"]["mrr"]) == (0, 0)
    assert board["metrics"]["cancelingSubs"] == 0


async def test_portal_honours_the_return_url(shop: Shop) -> None:
    await shop.buy("pro")
    [sub] = await shop.rows(Subscription)
    response = await shop.client.post(
        "/api/customer-portal", json={"returnUrl": "https://app.example/account"}, headers=shop.user
    )
    assert response.status_code == 200, response.text
    [sent] = shop.peer.posted("/v1/billing_portal/sessions")
    assert sent.form == {
        "customer": sub.stripe_customer_id,
        "return_url": "https://app.example/account",
    }
    assert sent.account == shop.account
    bad = await shop.client.post(
        "/api/customer-portal", json={"returnUrl": "http://evil.example"}, headers=shop.user
    )
    assert_error(bad, 400, "url_not_allowed")


# --- promote --------------------------------------------------------------------------------


async def test_promote_needs_live_oauth_when_live_stripe_is_configured(
    make_client: ClientFactory, stripe_peer: StripePeer
) -> None:
    client = await make_client(**stripe_settings(stripe_peer, stripe_secret_key_live="sk_live_op"))
    auth = await signup(client)
    created = await client.post(
        f"{API}/projects", json={"name": "Acme", "type": "saas"}, headers=auth
    )
    project_id = created.json()["project"]["id"]
    refused = await client.post(f"{API}/projects/{project_id}/promote", headers=auth)
    body = assert_error(refused, 428, "needs_live_oauth")
    assert body["needsLiveOAuth"] is True

    plain = await make_client(**stripe_settings(stripe_peer))
    auth = await signup(plain, "two@example.com")
    created = await plain.post(
        f"{API}/projects", json={"name": "Acme", "type": "saas"}, headers=auth
    )
    promoted = await plain.post(
        f"{API}/projects/{created.json()['project']['id']}/promote", headers=auth
    )
    assert promoted.status_code == 201, promoted.text


async def test_inbox_counts(shop: Shop) -> None:
    await shop.buy("pro")
    async with app_of(shop.client).state.database.session() as session:
        total = await session.scalar(select(func.count()).select_from(InboxEvent))
    assert total == 1
