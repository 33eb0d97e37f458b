"""Cart checkout (platform-contract §3.7, with holds): resolve, reserve, then ask Stripe.

    resolve the items ─ reserve the stock (one conditional UPDATE per line) ─ COMMIT
      └─ create the Checkout Session (mode payment, on the platform's connected account)
           ├─ ok:     store the session id on the order → {url}
           └─ failed: release the reservation (its own transaction) → 502

The reservation is committed before Stripe is awaited: an open transaction would keep
SQLite's write lock (and a PostgreSQL connection) for the whole network call. The webhook
side (`on_payment_completed`, `on_session_expired`) runs inside the dispatcher's inbox
transaction and only flushes.

Choices (differences from the original, which checked stock and decremented it on payment):
- Stock is held at checkout, so `GET /api/products` shows it gone at once and concurrent
  buyers cannot oversell; refusals are 409 `sold_out` / `insufficient_inventory`.
- A quantity over 99 is refused (422), not silently capped.
- Stripe wants `expires_at` 30 minutes to 24 hours ahead: a shorter CART_HOLD_MINUTES is
  clamped up to 31 minutes for the session only. The hold still ends at CART_HOLD_MINUTES; a
  payment arriving after that takes the stock again if it is still there (see
  `inventory.capture_late`), else the order is left paid-but-unfulfilled for a refund.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, cast

import structlog
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing import inventory
from tollhouse.billing.models import Order, OrderItem
from tollhouse.billing.stripe import connect
from tollhouse.billing.stripe.checkout import project_redirect_url
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.billing.stripe.errors import (
    StripeFailure,
    StripeNotConfigured,
)
from tollhouse.catalog import service as catalog
from tollhouse.catalog.models import Tier
from tollhouse.identity.caller import Caller
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import BadRequest, TollhouseError
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project

log = structlog.get_logger("tollhouse.cart")

MAX_QUANTITY = 99
MAX_LINES = 100
# Stripe refuses a Checkout Session expiring sooner than 30 minutes after its creation.
STRIPE_MIN_EXPIRY = timedelta(minutes=31)

ItemKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]


class CartItem(BaseModel):
    """One line: which product (any one of the three keys) and how many."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    price_id: ItemKey | None = Field(None, alias="priceId")
    product_id: ItemKey | None = Field(None, alias="productId")
    tier: ItemKey | None = None
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)] = 1

    @property
    def key(self) -> str | None:
        return self.price_id or self.product_id or self.tier


class CartCheckout(BaseModel):
    """`POST /api/cart/checkout`; the SDK's `name` (and anything else) is ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    items: Annotated[list[CartItem], Field(max_length=MAX_LINES)] = Field(default_factory=list)
    email: Email | None = None
    success_url: Url | None = Field(None, alias="successUrl")
    cancel_url: Url | None = Field(None, alias="cancelUrl")


class EmptyCart(BadRequest):
    code = "empty_cart"
    message = "The cart has no items."


class InvalidItem(BadRequest):
    code = "invalid_item"

    def __init__(self, key: str | None) -> None:
        super().__init__(
            f"Invalid item: {key}" if key else "Invalid item: give priceId, productId or tier.",
            detail={"item": key},
        )


class MixedCurrencies(BadRequest):
    code = "mixed_currencies"
    message = "All items of one cart must be priced in the same currency."


# --- the request --------------------------------------------------------------------------


async def redirect_urls(
    session: AsyncSession, project_id: str, cart: CartCheckout, origin: str | None
) -> tuple[str, str]:
    """The given URLs (relative ones against an `Origin` the project allows), else
    `{Origin}/cart?success=true|canceled=true` (the contract's); https, or http on localhost
    (400 `url_not_allowed`, also when neither is there)."""
    origin = origin if origin and origin != "null" else None
    success = await project_redirect_url(
        session, project_id, cart.success_url, origin, "/cart?success=true", "successUrl"
    )
    cancel = await project_redirect_url(
        session, project_id, cart.cancel_url, origin, "/cart?canceled=true", "cancelUrl"
    )
    return success, cancel


async def resolve_items(
    session: AsyncSession, project_id: str, items: list[CartItem]
) -> list[tuple[Tier, int]]:
    """Match each line to a one-off product by priceId, productId, slug or name (any case)."""
    if not items:
        raise EmptyCart()
    products = [
        t
        for t in await catalog.tiers_of_project(session, project_id)
        if t.billing_mode == "one_off"
    ]
    index: dict[str, Tier] = {}
    # Earlier kinds of key win a collision (a price id before someone's display name).
    for field in ("stripe_price_id", "stripe_product_id", "slug", "display_name"):
        for product in products:
            value = getattr(product, field)
            if value:
                index.setdefault(value.casefold(), product)
    lines = []
    for item in items:
        key = item.key
        tier = index.get(key.casefold()) if key else None
        if tier is None:
            raise InvalidItem(key)
        lines.append((tier, item.quantity))
    if len({tier.currency.lower() for tier, _ in lines}) > 1:
        raise MixedCurrencies()
    return lines


def line_item(tier: Tier, quantity: int) -> dict[str, Any]:
    """Stripe's line item: the synced price when there is one, else the price inline."""
    if tier.stripe_price_id:
        return {"price": tier.stripe_price_id, "quantity": quantity}
    product: dict[str, Any] = {"name": tier.display_name}
    if tier.description:
        product["description"] = tier.description
    if tier.image_url:
        product["images"] = [tier.image_url]
    return {
        "price_data": {
            "currency": tier.currency.lower(),
            "unit_amount": tier.price_cents,
            "product_data": product,
        },
        "quantity": quantity,
    }


async def _metadata(session: AsyncSession, caller: Caller, order: Order) -> dict[str, str]:
    metadata = {"orderId": order.id, "projectId": order.project_id}
    if caller.key is not None and caller.key.kind == "publishable" and caller.platform_id:
        key = await tenancy.key_of_platform(session, caller.platform_id, caller.key.key_id)
        metadata["publishableKey"] = key.display
    return metadata


_orders = cast(Table, Order.__table__)
_SET_SESSION_ID = (
    update(_orders)
    .where(_orders.c.id == bindparam("order"))
    .values(stripe_session_id=bindparam("session_id"))
)


async def checkout(
    session: AsyncSession,
    *,
    gateway: StripeGateway,
    caller: Caller,
    cart: CartCheckout,
    origin: str | None,
    hold: timedelta,
) -> str:
    """Reserve the cart and open a Stripe Checkout Session for it; returns its URL.

    Commits the request session (the reservation) before calling Stripe.
    """
    project = await session.get(Project, caller.project_id)
    assert project is not None  # the caller's key names a live project row
    success_url, cancel_url = await redirect_urls(session, project.id, cart, origin)
    lines = await resolve_items(session, project.id, cart.items)
    account_id = await connect.account_of(session, project.platform_id, project.mode)
    if not gateway.configured(project.mode):
        raise StripeNotConfigured()
    order = await inventory.reserve(session, project.id, lines, hold=hold, email=cart.email)
    metadata = await _metadata(session, caller, order)
    line_items = [line_item(tier, quantity) for tier, quantity in inventory.merge_lines(lines)]
    stripe_expiry = max(order.expires_at, utcnow() + STRIPE_MIN_EXPIRY)
    await session.commit()
    try:
        created = await gateway.create_checkout_session(
            mode=cast(Literal["test", "live"], project.mode),
            account_id=account_id,
            checkout_mode="payment",
            line_items=line_items,
            success_url=success_url,
            cancel_url=cancel_url,
            metadata=metadata,
            customer_email=cart.email,
            expires_at=int(stripe_expiry.timestamp()),
            automatic_tax=project.enable_tax,
        )
    except Exception as exc:
        await inventory.release(session, order)
        await session.commit()
        log.warning("cart_checkout_failed", order_id=order.id, error_type=type(exc).__name__)
        if isinstance(exc, TollhouseError):
            raise
        raise StripeFailure() from exc
    await session.execute(_SET_SESSION_ID, {"order": order.id, "session_id": created.id})
    return created.url


# --- the webhook side (called by /webhook/stripe after the inbox dedupe) ---------------------


async def _order_of(session: AsyncSession, stripe_session: dict[str, Any]) -> Order | None:
    """The order a Checkout Session pays for: by `metadata.orderId`, else by session id.

    A session naming an order of another project, or an order bound to another session, is
    not ours to settle (logged and ignored).
    """
    metadata = stripe_session.get("metadata") or {}
    session_id = stripe_session.get("id")
    order_id = metadata.get("orderId")
    if isinstance(order_id, str):
        order = await session.get(Order, order_id, populate_existing=True)
    elif isinstance(session_id, str):
        order = await session.scalar(select(Order).where(Order.stripe_session_id == session_id))
    else:
        return None
    if order is None:
        return None
    project_id = metadata.get("projectId")
    foreign_project = isinstance(project_id, str) and project_id != order.project_id
    foreign_session = order.stripe_session_id not in (None, session_id)
    if foreign_project or foreign_session:
        log.warning("cart_session_mismatch", order_id=order.id, session_id=session_id)
        return None
    return order


def _payment(stripe_session: dict[str, Any]) -> inventory.Payment:
    amount = stripe_session.get("amount_total")
    details = stripe_session.get("customer_details") or {}
    email = details.get("email") or stripe_session.get("customer_email")
    return inventory.Payment(
        amount_total_cents=amount if isinstance(amount, int) else None,
        email=email if isinstance(email, str) else None,
    )


async def on_payment_completed(session: AsyncSession, stripe_session: dict[str, Any]) -> None:
    """`checkout.session.completed` (mode payment): the held stock is sold.

    A session completed with a delayed payment method (`payment_status: unpaid`) keeps its
    hold until it expires. A payment for an already released hold takes the stock again if it
    is still there, else leaves the order paid-but-unfulfilled (expired with `paid_at`).
    """
    order = await _order_of(session, stripe_session)
    if order is None:
        return
    if stripe_session.get("payment_status", "paid") not in ("paid", "no_payment_required"):
        log.info("cart_payment_pending", order_id=order.id)
        return
    payment = _payment(stripe_session)
    if not await inventory.capture(session, order, payment):
        await inventory.capture_late(session, order, payment)


async def on_session_expired(session: AsyncSession, stripe_session: dict[str, Any]) -> None:
    """`checkout.session.expired`: give the held stock back (once, however often it comes)."""
    order = await _order_of(session, stripe_session)
    if order is not None:
        await inventory.release(session, order)


# --- the dashboard's list -------------------------------------------------------------------


async def orders_of_project(
    session: AsyncSession, project_id: str, *, limit: int, offset: int
) -> list[tuple[Order, list[tuple[OrderItem, Tier]]]]:
    """The project's orders, newest first, each with its lines and their products."""
    orders = list(
        await session.scalars(
            select(Order)
            .where(Order.project_id == project_id)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    lines: dict[str, list[tuple[OrderItem, Tier]]] = {order.id: [] for order in orders}
    if orders:
        rows = await session.execute(
            select(OrderItem, Tier)
            .join(Tier, Tier.id == OrderItem.tier_id)
            .where(OrderItem.order_id.in_(list(lines)))
            .order_by(OrderItem.id)
        )
        for item, tier in rows:
            lines[item.order_id].append((item, tier))
    return [(order, lines[order.id]) for order in orders]


async def sales(session: AsyncSession, project_id: str) -> tuple[int, int]:
    """(paid orders, their revenue in cents) of a project, for the dashboard."""
    count, revenue = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Order.amount_total_cents), 0)).where(
                Order.project_id == project_id, Order.status == "paid"
            )
        )
    ).one()
    return int(count), int(revenue)
