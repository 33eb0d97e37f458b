"""A sale without a Stripe account (issue 18): `STRIPE_SANDBOX=1` starts the sandbox beside
the app; our unmodified Stripe SDK talks to it over HTTP, a "browser" (an HTTP client that
follows no redirects by itself) pays on its Checkout page, consents on Connect's page and
cancels in its portal, and the sandbox delivers signed webhooks to /webhook/stripe. Effects
are asserted where they land: plans, stock, balances and ledger rows. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe
from sqlalchemy import select
from typer.testing import CliRunner

from stripe_peer import StripePeer
from support import ADMIN_KEY, SERVICE, ClientFactory, app_of, free_port, ledger_rows, resolve
from tollhouse.billing.models import Order, StripeConnection, Subscription
from tollhouse.cli import app as cli
from tollhouse.config import ConfigError, load_settings
from tollhouse.stripe_sandbox.beside import BesideSandbox
from tollhouse.stripe_sandbox.setup import REFUSAL

pytestmark = pytest.mark.anyio

API = "/console/api/v1"
BACK = {"success_url": "http://localhost:3000/ok", "cancel_url": "http://localhost:3000/no"}
PLATFORM_BACK = {"successUrl": BACK["success_url"], "cancelUrl": BACK["cancel_url"]}
SIGNUP = 50


@dataclass
class Sandboxed:
    app: httpx.AsyncClient  # our API, in process
    browser: httpx.AsyncClient  # a person's browser on the sandbox's pages
    beside: BesideSandbox

    async def pay(self, url: str, email: str = "buyer@example.com") -> httpx.Response:
        """Open the Checkout page and submit it, as a browser does."""
        page = await self.browser.get(url)
        assert page.status_code == 200, page.text
        assert "<form method=post" in page.text
        paid = await self.browser.post(url, data={"email": email, "card": "4242424242424242"})
        assert paid.status_code == 303, paid.text
        return paid

    def delivered(self) -> list[tuple[str, int | None]]:
        return [(d.type, d.status) for d in reversed(self.beside.sandbox.deliveries)]

    async def subscriptions(self) -> list[Subscription]:
        async with app_of(self.app).state.database.session() as session:
            return list(await session.scalars(select(Subscription)))

    async def checkout(self, user: str, product_id: str) -> str:
        """A Gateway API checkout for one of the catalogue's products; its URL."""
        created = await self.app.post(
            "/api/v1/billing/stripe/checkout",
            json={"product_id": product_id, **BACK},
            headers=as_user(user),
        )
        assert created.status_code == 200, created.text
        url: str = created.json()["url"]
        assert url.startswith(self.beside.sandbox.base_url + "/pay/cs_")
        return url


@pytest.fixture
async def sb(make_client: ClientFactory) -> AsyncIterator[Sandboxed]:
    client = await make_client(stripe_sandbox=True, stripe_sandbox_port=free_port())
    beside = app_of(client).state.stripe_sandbox
    async with httpx.AsyncClient(base_url=beside.sandbox.base_url) as browser:
        yield Sandboxed(client, browser, beside)


def as_user(user: str) -> dict[str, str]:
    return {**SERVICE, "X-User-ID": user}


# --- the operator's own users: a credit pack and a plan (Gateway API) -----------------------


async def test_a_credit_pack_bought_in_the_browser_grants_its_credits(sb: Sandboxed) -> None:
    user = await resolve(sb.app, "pack-buyer", email="pack@example.com")
    url = await sb.checkout(user, "credits_100")
    page = await sb.browser.get(url)
    assert "100 credits" in page.text
    assert "4.99 USD" in page.text

    declined = await sb.browser.post(url, data={"card": "4000000000000002"})
    assert declined.status_code == 402
    assert "declined" in declined.text
    assert sb.delivered() == []

    paid = await sb.pay(url)
    assert paid.headers["location"] == BACK["success_url"]
    assert sb.delivered() == [("checkout.session.completed", 200)]
    status = await sb.app.get("/api/v1/billing/status", headers=as_user(user))
    assert status.json()["balance"] == SIGNUP + 100
    [grant] = await ledger_rows(sb.app, "stripe_purchase")
    assert (grant.amount, grant.balance_after) == (100, SIGNUP + 100)
    assert grant.reference_id is not None
    assert grant.reference_id.startswith("pi_")
    again = await sb.browser.post(url, data={"card": "4242424242424242"})
    assert again.status_code == 400  # a paid session cannot be paid twice
    audit = await sb.app.get("/api/v1/credits/admin/audit", headers={"X-Admin-Key": ADMIN_KEY})
    assert audit.json()["ok"] is True


async def test_a_plan_bought_then_canceled_in_the_portal(sb: Sandboxed) -> None:
    user = await resolve(sb.app, "plan-buyer", email="plan@example.com")
    await sb.pay(await sb.checkout(user, "pro_monthly"))
    assert sb.delivered() == [
        ("customer.subscription.created", 200),
        ("invoice.paid", 200),
        ("checkout.session.completed", 200),
    ]
    status = (await sb.app.get("/api/v1/billing/status", headers=as_user(user))).json()
    assert status["balance"] == SIGNUP + 1000
    plan = status["subscription"]
    assert (plan["provider"], plan["product_id"], plan["status"]) == (
        "stripe",
        "pro_monthly",
        "active",
    )
    [grant] = await ledger_rows(sb.app, "subscription_grant")
    assert grant.amount == 1000

    portal = await sb.app.get(
        "/api/v1/billing/stripe/portal",
        params={"return_url": "http://localhost:3000/account"},
        headers=as_user(user),
    )
    assert portal.status_code == 200, portal.text
    page = await sb.browser.get(portal.json()["url"])
    assert page.status_code == 200
    assert "Pro (monthly)" in page.text
    [row] = await sb.subscriptions()
    action = f"/portal/{portal.json()['url'].rsplit('/', 1)[1]}/subscriptions/"
    assert action + row.stripe_subscription_id in page.text
    canceled = await sb.browser.post(action + row.stripe_subscription_id, data={"action": "now"})
    assert canceled.status_code == 303
    assert sb.delivered()[-1] == ("customer.subscription.deleted", 200)
    [row] = await sb.subscriptions()
    assert row.status == "canceled"
    after = (await sb.app.get("/api/v1/billing/status", headers=as_user(user))).json()
    assert after["subscription"] is None
    assert after["balance"] == SIGNUP + 1000  # what was granted stays granted


# --- a developer's platform: Connect, a subscription tier, a cart -----------------------------


async def _developer(sb: Sandboxed, project_type: str) -> tuple[dict[str, str], dict[str, Any]]:
    signup = await sb.app.post(
        f"{API}/auth/signup", json={"email": "dev@example.com", "password": "correct horse battery"}
    )
    assert signup.status_code == 201, signup.text
    sb.app.cookies.clear()
    auth = {"Cookie": f"tollhouse_session={signup.json()['token']}"}
    made = await sb.app.post(
        f"{API}/projects", json={"name": "shop", "type": project_type}, headers=auth
    )
    assert made.status_code == 201, made.text
    return auth, made.json()


async def _connect(sb: Sandboxed, auth: dict[str, str]) -> str:
    """Connect's OAuth round trip: our redirect, the consent page, the callback."""
    start = await sb.app.get(f"{API}/stripe/connect", params={"mode": "test"}, headers=auth)
    assert start.status_code == 302, start.text
    consent_url = start.headers["location"]
    assert consent_url.startswith(sb.beside.sandbox.base_url + "/oauth/authorize?")
    consent = await sb.browser.get(consent_url)
    assert consent.status_code == 200
    assert "ca_sandbox_test" in consent.text
    fields = dict(parse_qs(urlsplit(consent_url).query))
    form = {k: v[0] for k, v in fields.items()}
    denied = await sb.browser.post("/oauth/authorize", data={**form, "decision": "deny"})
    assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
    allowed = await sb.browser.post("/oauth/authorize", data={**form, "decision": "allow"})
    assert allowed.status_code == 303
    back = urlsplit(allowed.headers["location"])
    assert back.path == f"{API}/stripe/callback"
    done = await sb.app.get(f"{back.path}?{back.query}", headers=auth)
    assert done.status_code == 302, done.text
    status = (await sb.app.get(f"{API}/stripe", headers=auth)).json()["modes"]["test"]
    assert status["connected"] is True
    account: str = status["accountId"]
    assert account.startswith("acct_")
    return account


async def _end_user(sb: Sandboxed, project: dict[str, Any]) -> dict[str, str]:
    secret = {"Authorization": f"Bearer {project['secret_key']}"}
    customer = await sb.app.post("/api/customers", json={"email": "u@example.com"}, headers=secret)
    assert customer.status_code == 201, customer.text
    user_id = customer.json()["customer"]["id"]
    token = (await sb.app.post(f"/api/customers/{user_id}/token", headers=secret)).json()
    return {"X-Publishable-Key": project["publishable_key"], "X-Clerk-Token": token["token"]}


async def test_connect_then_a_tier_subscription(sb: Sandboxed) -> None:
    auth, project = await _developer(sb, "saas")
    account = await _connect(sb, auth)
    async with app_of(sb.app).state.database.session() as session:
        [row] = list(await session.scalars(select(StripeConnection)))
        assert row.account_id == account
    tiers = f"{API}/projects/{project['project']['id']}/tiers"
    for tier in ({"name": "free", "limit": 1}, {"name": "pro", "price_cents": 2900, "limit": 5}):
        assert (await sb.app.post(tiers, json=tier, headers=auth)).status_code == 201
    user = await _end_user(sb, project)
    checkout = await sb.app.post(
        "/api/create-checkout", json={"tier": "pro", **PLATFORM_BACK}, headers=user
    )
    assert checkout.status_code == 200, checkout.text
    session_id = checkout.json()["url"].rsplit("/", 1)[1]
    assert sb.beside.sandbox.find(session_id)[0] == account  # sold on the developer's account
    await sb.pay(checkout.json()["url"])
    assert ("checkout.session.completed", 200) in sb.delivered()
    used = await sb.app.post("/api/data", json={}, headers=user)
    assert used.status_code == 200, used.text
    assert (used.json()["usage"]["plan"], used.json()["usage"]["limit"]) == ("pro", 5)


async def test_a_cart_paid_in_the_browser_sells_the_held_stock(sb: Sandboxed) -> None:
    auth, project = await _developer(sb, "store")
    tiers = f"{API}/projects/{project['project']['id']}/tiers"
    mug = {"name": "mug", "display_name": "Mug", "price_cents": 1200, "inventory": 3}
    assert (await sb.app.post(tiers, json=mug, headers=auth)).status_code == 201
    await _connect(sb, auth)  # after the product: connecting gives it a price (catalog_sync)
    publishable = {"X-Publishable-Key": project["publishable_key"]}
    cart = await sb.app.post(
        "/api/cart/checkout",
        json={"items": [{"tier": "mug", "quantity": 2}], "email": "b@example.com", **PLATFORM_BACK},
        headers=publishable,
    )
    assert cart.status_code == 200, cart.text
    [sent] = sb.beside.sandbox.requests[-1:]
    products = (await sb.app.get("/api/products", headers=publishable)).json()["products"]
    assert sent.form["line_items"][0]["price"] == products[0]["priceId"]
    assert [p["inventory"] for p in products] == [1]  # held at checkout
    page = await sb.browser.get(cart.json()["url"])
    assert "Mug" in page.text
    assert "24.00 USD" in page.text
    await sb.pay(cart.json()["url"], email="b@example.com")
    assert sb.delivered() == [("checkout.session.completed", 200)]
    async with app_of(sb.app).state.database.session() as session:
        [order] = list(await session.scalars(select(Order)))
    assert (order.status, order.amount_total_cents, order.email) == ("paid", 2400, "b@example.com")
    products = (await sb.app.get("/api/products", headers=publishable)).json()["products"]
    assert [p["inventory"] for p in products] == [1]  # sold, not given back


# --- never in production -------------------------------------------------------------------

STRONG = {
    "TOLLHOUSE_ENV": "production",
    "JWT_SECRET_KEY": "j" * 40,
    "TOLLHOUSE_SECRET_PEPPER": "p" * 40,
    "FLASH_SERVICE_KEY": "f" * 40,
}


def test_production_refuses_the_sandbox(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(
            tollhouse_env="production",
            stripe_sandbox=True,
            tollhouse_data_dir=tmp_path,
            **{k.lower(): v for k, v in STRONG.items() if k != "TOLLHOUSE_ENV"},
        )
    assert "STRIPE_SANDBOX" in str(refused.value)
    assert "\n" not in str(refused.value)
    settings = load_settings(
        tollhouse_env="production",
        tollhouse_data_dir=tmp_path,
        **{k.lower(): v for k, v in STRONG.items() if k != "TOLLHOUSE_ENV"},
    )
    with pytest.raises(ConfigError, match="development only"):
        BesideSandbox.prepare(settings.model_copy(update={"stripe_sandbox": True}))

    runner = CliRunner()
    env = {**STRONG, "STRIPE_SANDBOX": "1", "TOLLHOUSE_DATA_DIR": str(tmp_path)}
    # Every command that loads the settings refuses (`serve` too; `migrate` cannot hang here).
    served = runner.invoke(cli, ["migrate"], env=env)
    assert served.exit_code == 2
    assert "STRIPE_SANDBOX is on" in served.output
    assert not (tmp_path / "tollhouse.db").exists()
    alone = runner.invoke(cli, ["stripe-sandbox"], env={**env, "STRIPE_SANDBOX": None})
    assert alone.exit_code == 2
    assert alone.output.strip() == REFUSAL


# --- the rest of the API, straight through the stripe SDK --------------------------------


def test_the_sdk_unchanged_refunds_subscriptions_account_endpoints(stripe_peer: StripePeer) -> None:
    client = stripe.StripeClient(
        "sk_test_sdk",
        base_addresses={"api": stripe_peer.base_url, "connect": stripe_peer.base_url},
        max_network_retries=0,
    )
    assert client.v1.accounts.retrieve_current().id == "acct_sandbox_platform"

    inline = {"currency": "eur", "unit_amount": 250, "product_data": {"name": "Sticker"}}
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price_data": inline, "quantity": 3}],
            "success_url": "https://example.com/ok",
        }
    )
    assert (session.amount_total, session.currency) == (750, "eur")
    paid = stripe_peer.complete_session(session.id)
    found = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    assert found.line_items is not None
    [line] = found.line_items.data
    assert (line.description, line.quantity, line.amount_total) == ("Sticker", 3, 750)
    refund = client.v1.refunds.create(params={"payment_intent": paid["payment_intent"]})
    assert (refund.amount, refund.status) == (750, "succeeded")
    with pytest.raises(stripe.InvalidRequestError, match="between 1 and 0"):
        client.v1.refunds.create(params={"payment_intent": paid["payment_intent"]})

    abandoned = client.v1.checkout.sessions.create(
        params={"mode": "payment", "line_items": [{"price_data": inline, "quantity": 1}]}
    )
    assert client.v1.checkout.sessions.expire(abandoned.id).status == "expired"

    price = stripe_peer.add_price(900, interval="month")
    monthly = client.v1.checkout.sessions.create(
        params={"mode": "subscription", "line_items": [{"price": price, "quantity": 1}]}
    )
    sub_id = stripe_peer.complete_session(monthly.id)["subscription"]
    later = client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    assert later.cancel_at_period_end is True
    assert later.status == "active"
    gone = client.v1.subscriptions.cancel(sub_id)
    assert gone.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError, match="No such subscription"):
        client.v1.subscriptions.retrieve("sub_missing")

    # Registered last: the events above had nowhere to go (nothing leaves the machine).
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]}
    )
    assert endpoint.secret is not None
    assert endpoint.secret.startswith("whsec_")
    listed = client.v1.webhook_endpoints.list()
    assert [e.url for e in listed.data] == ["http://127.0.0.1:9/hook"]

    # What Stripe's own verifier accepts, the sandbox signs.
    event = stripe_peer.event("charge.refunded", {"id": "ch_1", "object": "charge"})
    payload, header = stripe_peer.sign(event, "whsec_x")
    verified = stripe.Webhook.construct_event(payload.decode(), header, "whsec_x")
    assert verified.type == "charge.refunded"
