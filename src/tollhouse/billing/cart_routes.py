"""Cart checkout and orders (platform-contract §1.2, §3.7): thin; the flow is `cart.py`.

- `POST /api/cart/checkout` (publishable or secret key) → `{url}`; the stock is held from
  this moment until the payment lands, the session expires or CART_HOLD_MINUTES pass.
- `GET /api/orders` (secret key): the project's orders with their lines, newest first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from tollhouse.billing import cart
from tollhouse.billing.models import Order, OrderItem
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.catalog.models import Tier
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import PlatformCaller, SecretKeyCaller, identity_context
from tollhouse.kit.paging import Limit, Offset

router = APIRouter(tags=["platform"])


def _iso(moment: Any) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


@router.post("/api/cart/checkout")
async def cart_checkout(
    body: cart.CartCheckout,
    caller: PlatformCaller,
    request: Request,
    session: SessionDep,
    stripe: StripeDep,
    origin: Annotated[str | None, Header()] = None,
) -> dict[str, str]:
    """Hold the cart's stock and open a Stripe Checkout Session (mode payment) for it."""
    settings = identity_context(request).settings
    url = await cart.checkout(
        session,
        gateway=stripe,
        caller=caller,
        cart=body,
        origin=origin,
        hold=timedelta(minutes=settings.cart_hold_minutes),
    )
    return {"url": url}


def _line(item: OrderItem, tier: Tier) -> dict[str, Any]:
    return {
        "item": tier.slug,
        "name": tier.display_name,
        "priceId": tier.stripe_price_id,
        "quantity": item.quantity,
        "unitAmount": item.unit_amount_cents,
        "status": item.status,
    }


def _order(order: Order, lines: list[tuple[OrderItem, Tier]]) -> dict[str, Any]:
    return {
        "id": order.id,
        "status": order.status,
        # Paid after its hold was released and the stock was gone: refund it.
        "needsRefund": order.status == "expired" and order.paid_at is not None,
        "email": order.email,
        "amountTotal": order.amount_total_cents,
        "currency": order.currency,
        "stripeSessionId": order.stripe_session_id,
        "createdAt": _iso(order.created_at),
        "expiresAt": _iso(order.expires_at),
        "paidAt": _iso(order.paid_at),
        "items": [_line(item, tier) for item, tier in lines],
    }


@router.get("/api/orders")
async def list_orders(
    caller: SecretKeyCaller,
    session: SessionDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    orders = await cart.orders_of_project(session, caller.project_id, limit=limit, offset=offset)
    return {
        "orders": [_order(order, lines) for order, lines in orders],
        "limit": limit,
        "offset": offset,
    }
