"""Cart checkout with inventory holds (platform-contract §3.7, §8 16 and 20; issue 5), on SQLite
and PostgreSQL: the rules through `billing.inventory` and `billing.cart`, then the HTTP API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from platform_fixtures import Keys, database, new_project
from stripe_peer import StripePeer
from support import ClientFactory, app_of, assert_error
from tollhouse.billing import cart, inventory
from tollhouse.billing.models import Order, OrderItem, StripeConnection
from tollhouse.billing.stripe.client import CheckoutSession
from tollhouse.billing.stripe.errors import StripeFailure
from tollhouse.catalog import service as catalog
from tollhouse.catalog.models import Tier
from tollhouse.db.engine import Database
from tollhouse.kit.clock import utcnow

pytestmark = pytest.mark.anyio

CART = "/api/cart/checkout"
ORIGIN = {"Origin": "https://shop.example"}
HOLD = timedelta(minutes=30)
ACCOUNT = "acct_cart_test"


# --- fixtures -----------------------------------------------------------------------------


@dataclass
class FakeStripe:
    """The Stripe port reduced to `create_checkout_session`, recording every call: lets the
    cart's own rules be tested one by one; the end-to-end tests below use the local Stripe peer
    through the real port and SDK."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def configured(self, mode: str) -> bool:
        return True

    async def create_checkout_session(self, **params: Any) -> CheckoutSession:
        self.calls.append(params)
        if self.fail:
            raise StripeFailure("Your card was declined.")
        session_id = f"cs_test_{len(self.calls)}"
        return CheckoutSession(id=session_id, url=f"https://checkout.stripe.test/{session_id}")

    async def close(self) -> None:
        return None


@dataclass
class Shop:
    client: httpx.AsyncClient
    keys: Keys
    stripe: FakeStripe

    @property
    def db(self) -> Database:
        return database(self.client)

    async def stock(self, slug: str) -> int | None:
        async with self.db.session() as session:
            tier = await catalog.tier_by_slug(session, self.keys.project_id, slug)
            assert tier is not None
            return tier.inventory

    async def tiers(self, *slugs: str) -> list[Tier]:
        async with self.db.session() as session:
            found = [await catalog.tier_by_slug(session, self.keys.project_id, s) for s in slugs]
        assert all(tier is not None for tier in found)
        return [tier for tier in found if tier is not None]

    async def reserve(self, *lines: tuple[str, int], hold: timedelta = HOLD) -> Order:
        tiers = await self.tiers(*(slug for slug, _ in lines))
        async with self.db.session() as session:
            return await inventory.reserve(
                session,
                self.keys.project_id,
                [(tier, quantity) for tier, (_, quantity) in zip(tiers, lines, strict=True)],
                hold=hold,
            )

    async def order(self, order_id: str) -> tuple[Order, list[OrderItem]]:
        async with self.db.session() as session:
            order = await session.get(Order, order_id)
            assert order is not None
            items = await session.scalars(select(OrderItem).where(OrderItem.order_id == order_id))
            return order, list(items)

    async def checkout(self, *items: dict[str, Any], **body: Any) -> httpx.Response:
        return await self.client.post(
            CART, json={"items": list(items), **body}, headers={**self.keys.publishable, **ORIGIN}
        )


async def open_shop(
    client: httpx.AsyncClient, tiers: list[dict[str, Any]] | None = None, *, connected: bool = True
) -> Shop:
    """A store project (A: 2 in stock, B: sold out, C: unlimited), its platform connected."""
    keys = await new_project(client, type="store", tiers=tiers)
    if connected:
        async with database(client).session() as session:
            session.add(
                StripeConnection(platform_id=keys.platform_id, mode="test", account_id=ACCOUNT)
            )
    app = app_of(client)
    await app.state.stripe.close()
    fake = FakeStripe()
    app.state.stripe = fake
    return Shop(client, keys, fake)


@pytest.fixture
async def shop(client: httpx.AsyncClient) -> Shop:
    return await open_shop(client)


def stripe_session(order: Order, **fields: Any) -> dict[str, Any]:
    """A Checkout Session as Stripe's webhook carries it."""
    return {
        "id": order.stripe_session_id or f"cs_for_{order.id}",
        "object": "checkout.session",
        "mode": "payment",
        "payment_status": "paid",
        "amount_total": order.amount_total_cents,
        "customer_details": {"email": "buyer@example.com"},
        "metadata": {"orderId": order.id, "projectId": order.project_id},
        **fields,
    }


# --- the rules: reserve, capture, release -------------------------------------------------


async def test_reserve_takes_stock_and_writes_a_pending_order(shop: Shop) -> None:
    order = await shop.reserve(("a", 1), ("c", 5))
    assert await shop.stock("a") == 1
    assert await shop.stock("c") is None  # unlimited holds nothing
    stored, items = await shop.order(order.id)
    assert stored.status == "pending"
    assert stored.amount_total_cents == 500 + 5 * 900
    assert HOLD - timedelta(minutes=1) < stored.expires_at - utcnow() <= HOLD
    assert sorted((i.quantity, i.status) for i in items) == [(1, "held"), (5, "held")]


async def test_a_cart_is_all_or_nothing(shop: Shop) -> None:
    with pytest.raises(inventory.SoldOut):
        await shop.reserve(("a", 1), ("b", 1))
    with pytest.raises(inventory.InsufficientInventory) as refused:
        await shop.reserve(("c", 1), ("a", 1), ("a", 2))  # merged: 3 of a, 2 in stock
    assert refused.value.detail == {
        "item": "a",
        "name": "Product A",
        "requested": 3,
        "available": 2,
    }
    assert await shop.stock("a") == 2
    async with shop.db.session() as session:
        assert (await session.scalars(select(Order))).all() == []


async def test_capture_keeps_the_stock_and_settles_once(shop: Shop) -> None:
    order = await shop.reserve(("a", 2))
    async with shop.db.session() as session:
        assert await inventory.capture(session, order, inventory.Payment(1000, "b@example.com"))
        assert not await inventory.capture(session, order)
        assert not await inventory.release(session, order)  # paid: nothing goes back
    stored, items = await shop.order(order.id)
    assert (stored.status, stored.email, stored.amount_total_cents) == (
        "paid",
        "b@example.com",
        1000,
    )
    assert stored.paid_at is not None
    assert [item.status for item in items] == ["captured"]
    assert await shop.stock("a") == 0


async def test_concurrent_releases_give_the_stock_back_once(shop: Shop) -> None:
    order = await shop.reserve(("a", 2), ("c", 1))
    assert await shop.stock("a") == 0

    async def release() -> bool:
        async with shop.db.session() as session:
            return await inventory.release(session, order)

    results = await asyncio.gather(*(release() for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    assert await shop.stock("a") == 2
    stored, items = await shop.order(order.id)
    assert stored.status == "expired"
    assert {item.status for item in items} == {"released"}


async def test_the_sweeper_releases_expired_orders_once(shop: Shop) -> None:
    expired = await shop.reserve(("a", 1), hold=timedelta(seconds=-1))
    live = await shop.reserve(("a", 1))
    assert await shop.stock("a") == 0
    async with shop.db.session() as session:
        assert await inventory.release_expired(session, utcnow()) == 1
    async with shop.db.session() as session:
        assert await inventory.release_expired(session, utcnow()) == 0
    assert await shop.stock("a") == 1
    assert (await shop.order(expired.id))[0].status == "expired"
    assert (await shop.order(live.id))[0].status == "pending"


async def test_the_sweeper_job_is_wired(shop: Shop) -> None:
    from tollhouse import wiring

    await shop.reserve(("a", 2), hold=timedelta(seconds=-1))
    assert await wiring.sweep_expired_orders(shop.db) == 1
    assert await shop.stock("a") == 2


# --- the webhook side ---------------------------------------------------------------------


async def test_session_expired_gives_stock_back_once(shop: Shop) -> None:
    order = await shop.reserve(("a", 2))
    for _ in range(2):
        async with shop.db.session() as session:
            await cart.on_session_expired(session, stripe_session(order))
    assert await shop.stock("a") == 2
    assert (await shop.order(order.id))[0].status == "expired"


async def test_payment_completed_captures_once(shop: Shop) -> None:
    order = await shop.reserve(("a", 2))
    for _ in range(2):
        async with shop.db.session() as session:
            await cart.on_payment_completed(session, stripe_session(order, amount_total=1234))
    stored, items = await shop.order(order.id)
    assert (stored.status, stored.amount_total_cents, stored.email) == (
        "paid",
        1234,
        "buyer@example.com",
    )
    assert [item.status for item in items] == ["captured"]
    async with shop.db.session() as session:  # an expiry after payment changes nothing
        await cart.on_session_expired(session, stripe_session(order))
    assert await shop.stock("a") == 0
    assert (await shop.order(order.id))[0].status == "paid"


async def test_unpaid_completion_keeps_the_hold(shop: Shop) -> None:
    order = await shop.reserve(("a", 1))
    async with shop.db.session() as session:
        await cart.on_payment_completed(session, stripe_session(order, payment_status="unpaid"))
    assert (await shop.order(order.id))[0].status == "pending"
    assert await shop.stock("a") == 1


async def test_payment_after_release_takes_the_stock_again_when_it_is_there(shop: Shop) -> None:
    order = await shop.reserve(("a", 2))
    async with shop.db.session() as session:
        await cart.on_session_expired(session, stripe_session(order))
    assert await shop.stock("a") == 2
    async with shop.db.session() as session:
        await cart.on_payment_completed(session, stripe_session(order))
    stored, items = await shop.order(order.id)
    assert stored.status == "paid"
    assert [item.status for item in items] == ["captured"]
    assert await shop.stock("a") == 0


async def test_payment_after_release_never_resells_stock(shop: Shop) -> None:
    """The released stock went to another buyer: the late payment is recorded, not filled."""
    late = await shop.reserve(("a", 2))
    async with shop.db.session() as session:
        await cart.on_session_expired(session, stripe_session(late))
    other = await shop.reserve(("a", 2))
    for _ in range(2):
        async with shop.db.session() as session:
            await cart.on_payment_completed(session, stripe_session(late))
    stored, items = await shop.order(late.id)
    assert stored.status == "expired"
    assert stored.paid_at is not None  # paid, not fulfilled: the developer refunds it
    assert [item.status for item in items] == ["released"]
    assert await shop.stock("a") == 0  # never negative, the other buyer keeps theirs
    assert (await shop.order(other.id))[0].status == "pending"
    orders = (await shop.client.get("/api/orders", headers=shop.keys.secret)).json()["orders"]
    assert {o["id"]: o["needsRefund"] for o in orders} == {late.id: True, other.id: False}


async def test_sessions_of_other_projects_or_sessions_are_ignored(
    shop: Shop, client: httpx.AsyncClient
) -> None:
    order = await shop.reserve(("a", 2))
    forged = stripe_session(order)
    forged["metadata"] = {"orderId": order.id, "projectId": "prj_someone_else"}
    async with shop.db.session() as session:
        await cart.on_session_expired(session, forged)
        await cart.on_payment_completed(session, {"id": "cs_unknown", "metadata": {}})
        await cart.on_payment_completed(session, {"metadata": {"orderId": "ord_nope"}})
    assert (await shop.order(order.id))[0].status == "pending"
    assert await shop.stock("a") == 0


# --- POST /api/cart/checkout ----------------------------------------------------------------


async def test_contract_refusals(shop: Shop) -> None:
    """§8 16 (409 for stock, as issue 5 asks; over 99 refused instead of capped)."""
    assert_error(await shop.checkout(), 400, "empty_cart")
    assert_error(await shop.checkout({"priceId": "price_nope"}), 400, "invalid_item")
    assert_error(await shop.checkout({"quantity": 1}), 400, "invalid_item")
    body = assert_error(await shop.checkout({"tier": "B"}), 409, "sold_out")
    assert body["message"] == "Item sold out: Product B"
    body = assert_error(
        await shop.checkout({"tier": "a", "quantity": 3}), 409, "insufficient_inventory"
    )
    assert body["detail"] == {"item": "a", "name": "Product A", "requested": 3, "available": 2}
    for quantity in (500, 100, 0, -1, "2", 1.5):
        response = await shop.checkout({"tier": "C", "quantity": quantity})
        assert_error(response, 422, "validation_error")
    assert shop.stripe.calls == []
    assert await shop.stock("a") == 2


async def test_a_valid_cart_gets_a_url_and_the_stock_is_held_at_once(shop: Shop) -> None:
    response = await shop.checkout(
        {"tier": "product a", "quantity": 2},
        {"productId": "c"},
        email="buyer@example.com",
        name="Ignored Name",
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"url": "https://checkout.stripe.test/cs_test_1"}
    products = (await shop.client.get("/api/products", headers=shop.keys.publishable)).json()
    stock = {p["key"]: (p["inventory"], p["soldOut"]) for p in products["products"]}
    assert stock == {"a": (0, True), "b": (0, True), "c": (None, False)}

    (call,) = shop.stripe.calls
    async with shop.db.session() as session:
        order = await session.scalar(select(Order))
    assert order is not None
    assert order.stripe_session_id == "cs_test_1"
    assert order.email == "buyer@example.com"
    assert call["mode"] == "test"
    assert call["account_id"] == ACCOUNT
    assert call["checkout_mode"] == "payment"
    assert call["customer_email"] == "buyer@example.com"
    assert call["success_url"] == "https://shop.example/cart?success=true"
    assert call["cancel_url"] == "https://shop.example/cart?canceled=true"
    assert call["metadata"] == {
        "orderId": order.id,
        "projectId": shop.keys.project_id,
        "publishableKey": shop.keys.pk,
    }
    lines = sorted(call["line_items"], key=lambda line: line["price_data"]["unit_amount"])
    assert lines == [
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": 500,
                "product_data": {"name": "Product A"},
            },
            "quantity": 2,
        },
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": 900,
                "product_data": {"name": "Product C"},
            },
            "quantity": 1,
        },
    ]
    # The session ends with the hold (CART_HOLD_MINUTES, 60 by default).
    assert call["expires_at"] == int(order.expires_at.timestamp())


async def test_a_short_hold_is_clamped_for_stripe_only(make_client: ClientFactory) -> None:
    shop = await open_shop(await make_client(cart_hold_minutes=5))
    before = utcnow()
    assert (await shop.checkout({"tier": "a"})).status_code == 200
    (call,) = shop.stripe.calls
    async with shop.db.session() as session:
        order = await session.scalar(select(Order))
    assert order is not None
    assert order.expires_at - before < timedelta(minutes=6)
    # Stripe refuses a session expiring under 30 minutes after its creation.
    assert call["expires_at"] >= int(before.timestamp()) + 31 * 60


async def test_synced_prices_and_the_secret_key(client: httpx.AsyncClient) -> None:
    shop = await open_shop(client)
    async with shop.db.session() as session:
        tier = await catalog.tier_by_slug(session, shop.keys.project_id, "a")
        assert tier is not None
        tier.stripe_price_id = "price_A1"
        tier.stripe_product_id = "prod_A"
    response = await client.post(
        CART,
        json={
            "items": [{"priceId": "PRICE_A1"}],
            "successUrl": "https://s.example/ok",
            "cancelUrl": "http://localhost:3000/cart",
        },
        headers=shop.keys.secret,
    )
    assert response.status_code == 200, response.text
    (call,) = shop.stripe.calls
    assert call["line_items"] == [{"price": "price_A1", "quantity": 1}]
    assert call["success_url"] == "https://s.example/ok"
    assert call["cancel_url"] == "http://localhost:3000/cart"
    assert "publishableKey" not in call["metadata"]
    assert await shop.stock("a") == 1


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"successUrl": "http://shop.example/ok", "cancelUrl": "https://s.example/c"}, ORIGIN),
        ({"successUrl": "javascript:alert(1)"}, ORIGIN),
        ({}, {"Origin": "http://evil.example"}),
        ({}, {}),
        ({"successUrl": "https://s.example/ok"}, {}),
    ],
)
async def test_redirect_urls_must_be_https_or_local(
    shop: Shop, body: dict[str, Any], headers: dict[str, str]
) -> None:
    response = await shop.client.post(
        CART,
        json={"items": [{"tier": "a"}], **body},
        headers={**shop.keys.publishable, **headers},
    )
    assert_error(response, 400, "url_not_allowed")
    assert await shop.stock("a") == 2


async def test_stripe_failure_releases_the_reservation(shop: Shop) -> None:
    shop.stripe.fail = True
    response = await shop.checkout({"tier": "a", "quantity": 2})
    assert_error(response, 502, "stripe_error")
    assert await shop.stock("a") == 2
    async with shop.db.session() as session:
        (order,) = (await session.scalars(select(Order))).all()
    assert order.status == "expired"
    assert order.stripe_session_id is None


async def test_no_stripe_connection_reserves_nothing(client: httpx.AsyncClient) -> None:
    shop = await open_shop(client, connected=False)
    assert_error(await shop.checkout({"tier": "a"}), 400, "stripe_not_connected")
    assert await shop.stock("a") == 2
    assert shop.stripe.calls == []


async def test_subscription_tiers_are_not_in_the_cart(client: httpx.AsyncClient) -> None:
    keys = await new_project(client)  # saas: free, pro, max
    response = await client.post(
        CART, json={"items": [{"tier": "pro"}]}, headers={**keys.publishable, **ORIGIN}
    )
    assert_error(response, 400, "invalid_item")


async def test_orders_list_for_the_secret_key(shop: Shop) -> None:
    assert (await shop.checkout({"tier": "a"})).status_code == 200
    assert (await shop.checkout({"tier": "c", "quantity": 3})).status_code == 200
    assert_error(
        await shop.client.get("/api/orders", headers=shop.keys.publishable),
        403,
        "secret_key_required",
    )
    page = (await shop.client.get("/api/orders?limit=1", headers=shop.keys.secret)).json()
    (newest,) = page["orders"]
    assert newest["items"] == [
        {
            "item": "c",
            "name": "Product C",
            "priceId": None,
            "quantity": 3,
            "unitAmount": 900,
            "status": "held",
        }
    ]
    assert newest["status"] == "pending"
    assert newest["stripeSessionId"] == "cs_test_2"
    older = (await shop.client.get("/api/orders?offset=1", headers=shop.keys.secret)).json()
    assert [o["items"][0]["item"] for o in older["orders"]] == ["a"]
    assert_error(
        await shop.client.get("/api/orders?limit=0", headers=shop.keys.secret),
        422,
        "validation_error",
    )


# --- concurrency --------------------------------------------------------------------------


async def test_fifty_buyers_for_ten_units(make_client: ClientFactory) -> None:
    """Exactly 10 sell, 40 get a clear 409, the stock ends at 0 and never below (both
    backends; PostgreSQL runs the requests truly in parallel)."""
    client = await make_client()
    shop = await open_shop(
        client,
        [{"name": "limited", "display_name": "Limited", "price_cents": 100, "inventory": 10}],
    )
    responses = await asyncio.gather(*(shop.checkout({"tier": "limited"}) for _ in range(50)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(409) == 40, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 409} <= {
        "sold_out",
        "insufficient_inventory",
    }
    assert await shop.stock("limited") == 0
    async with shop.db.session() as session:
        orders = (await session.scalars(select(Order))).all()
    assert len(orders) == 10
    assert all(order.stripe_session_id for order in orders)


async def test_concurrent_carts_in_opposite_orders_do_not_deadlock(
    make_client: ClientFactory,
) -> None:
    client = await make_client()
    shop = await open_shop(
        client,
        [
            {"name": "x", "price_cents": 100, "inventory": 20},
            {"name": "y", "price_cents": 100, "inventory": 20},
        ],
    )
    forward = [{"tier": "x"}, {"tier": "y"}]
    backward = [{"tier": "y"}, {"tier": "x"}]
    responses = await asyncio.gather(
        *(shop.checkout(*(forward if i % 2 else backward)) for i in range(30))
    )
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 20, statuses
    assert statuses.count(409) == 10, statuses
    assert (await shop.stock("x"), await shop.stock("y")) == (0, 0)


# --- end to end: the real Stripe port and SDK against the local Stripe peer -----------------

WHSEC = "whsec_cart_0123456789"


async def test_end_to_end_through_stripe_and_the_webhook(
    make_client: ClientFactory,
    stripe_peer: StripePeer,
) -> None:
    client = await make_client(
        stripe_secret_key_test="sk_test_operator",
        stripe_webhook_secret_test=WHSEC,
        stripe_api_base=stripe_peer.base_url,
        stripe_max_network_retries=0,
    )
    keys = await new_project(client, type="store")
    gateway = app_of(client).state.stripe
    product = await gateway.create_product(
        mode="test", account_id=ACCOUNT, params={"name": "Product A"}
    )
    price = await gateway.create_price(
        mode="test",
        account_id=ACCOUNT,
        product_id=product,
        unit_amount=500,
        currency="usd",
        recurring_interval=None,
    )
    async with database(client).session() as session:
        session.add(StripeConnection(platform_id=keys.platform_id, mode="test", account_id=ACCOUNT))
        tier = await catalog.tier_by_slug(session, keys.project_id, "a")
        assert tier is not None
        tier.stripe_price_id, tier.stripe_product_id = price, product

    async def buy() -> str:
        response = await client.post(
            CART,
            json={"items": [{"priceId": price, "quantity": 2}], "email": "b@example.com"},
            headers={**keys.publishable, **ORIGIN},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["url"]).rsplit("/", 1)[1]

    async def deliver(event_type: str, obj: dict[str, Any]) -> None:
        event = stripe_peer.event(event_type, obj, account=ACCOUNT)
        response = await stripe_peer.deliver(client, event, WHSEC)
        assert response.status_code == 200, response.text

    async def stock_and_orders() -> tuple[int | None, dict[str, str]]:
        async with database(client).session() as session:
            tier = await catalog.tier_by_slug(session, keys.project_id, "a")
            orders = await session.scalars(select(Order))
            assert tier is not None
            return tier.inventory, {o.stripe_session_id or "": o.status for o in orders}

    # Expired session: the stock comes back, once.
    first = await buy()
    (request,) = stripe_peer.posted("/v1/checkout/sessions")
    assert request.account == ACCOUNT
    assert request.form["mode"] == "payment"
    assert request.form["line_items"] == [{"price": price, "quantity": "2"}]
    assert request.form["metadata"]["projectId"] == keys.project_id
    assert await stock_and_orders() == (0, {first: "pending"})
    _, expired = stripe_peer.find(first)
    for _ in range(2):
        await deliver("checkout.session.expired", {**expired, "status": "expired"})
    assert await stock_and_orders() == (2, {first: "expired"})

    # Paid session: sold once, however often Stripe says so.
    second = await buy()
    paid = stripe_peer.complete_session(second)
    for _ in range(2):
        await deliver("checkout.session.completed", paid)
    assert await stock_and_orders() == (0, {first: "expired", second: "paid"})
    metrics = (await client.get("/api/dashboard", headers=keys.secret)).json()["metrics"]
    assert (metrics["storeSalesCount"], metrics["storeTotalRevenue"]) == (1, 1000)

    # Sold out now, and a failing Stripe (an unknown price) leaves nothing held.
    response = await client.post(
        CART, json={"items": [{"tier": "a"}]}, headers={**keys.publishable, **ORIGIN}
    )
    assert_error(response, 409, "sold_out")
    async with database(client).session() as session:
        tier = await catalog.tier_by_slug(session, keys.project_id, "c")
        assert tier is not None
        tier.stripe_price_id = "price_missing"
    response = await client.post(
        CART, json={"items": [{"tier": "c"}]}, headers={**keys.publishable, **ORIGIN}
    )
    assert_error(response, 502, "stripe_error")
