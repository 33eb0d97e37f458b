"""Inventory holds for cart checkouts: reserve, capture, release — each one conditional statement.

    UPDATE tiers SET inventory = inventory - :q
     WHERE id = :tier AND project_id = :project AND (inventory IS NULL OR inventory >= :q)
    RETURNING inventory                    -- no row: sold out or not enough; NULL: unlimited

Stock is taken when the cart is reserved (so `GET /api/products` shows it gone at once), kept
when the payment lands (`capture`), and given back exactly once when the order expires
(`release`, guarded by the conditional `pending → expired` flip of the order). Nothing reads a
count and writes it back, so concurrent buyers can never oversell: the `CHECK (inventory >= 0)`
on tiers is only the second line of defence. Functions flush, never commit.

A payment that lands after its hold was released (`capture_late`) takes the stock again with
the same conditional statement; when it is gone by then the order stays `expired` with
`paid_at` set — "paid, not fulfilled": the developer refunds it (never a negative stock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.models import Order, OrderItem
from tollhouse.catalog.models import Tier
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import Conflict

log = structlog.get_logger("tollhouse.inventory")


class SoldOut(Conflict):
    code = "sold_out"

    def __init__(self, tier: Tier) -> None:
        super().__init__(
            f"Item sold out: {tier.display_name}",
            detail={"item": tier.slug, "name": tier.display_name, "available": 0},
        )


class InsufficientInventory(Conflict):
    code = "insufficient_inventory"

    def __init__(self, tier: Tier, requested: int, available: int) -> None:
        super().__init__(
            f"Not enough inventory for {tier.display_name}: {requested} requested, "
            f"{available} available.",
            detail={
                "item": tier.slug,
                "name": tier.display_name,
                "requested": requested,
                "available": available,
            },
        )


# Built once: these run for every cart line under contention (see ledger.service._MOVE).
_tiers = cast(Table, Tier.__table__)
_orders = cast(Table, Order.__table__)
_items = cast(Table, OrderItem.__table__)

# NULL - q stays NULL: an unlimited item matches and holds nothing, in the same statement.
_TAKE = (
    update(_tiers)
    .where(
        _tiers.c.id == bindparam("tier"),
        _tiers.c.project_id == bindparam("project"),
        (_tiers.c.inventory.is_(None)) | (_tiers.c.inventory >= bindparam("quantity")),
    )
    .values(inventory=_tiers.c.inventory - bindparam("quantity"))
    .returning(_tiers.c.inventory)
)
_GIVE_BACK = (
    update(_tiers)
    .where(_tiers.c.id == bindparam("tier"), _tiers.c.inventory.is_not(None))
    .values(inventory=_tiers.c.inventory + bindparam("quantity"))
)
_AVAILABLE = select(_tiers.c.inventory).where(_tiers.c.id == bindparam("tier"))

# The order flips are the guards: only one caller ever moves an order out of a state.
_PAY = (
    update(_orders)
    .where(_orders.c.id == bindparam("order"), _orders.c.status == bindparam("from_status"))
    .values(
        status="paid",
        paid_at=bindparam("now"),
        amount_total_cents=bindparam("amount"),
        email=bindparam("payer_email"),
    )
    .returning(_orders.c.id)
)
_EXPIRE = (
    update(_orders)
    .where(_orders.c.id == bindparam("order"), _orders.c.status == "pending")
    .values(status=bindparam("to_status"))
    .returning(_orders.c.id)
)
# Paid after the stock went back and could not be taken again: stays expired, `paid_at` set.
_PAID_UNFULFILLED = (
    update(_orders)
    .where(
        _orders.c.id == bindparam("order"),
        _orders.c.status == "expired",
        _orders.c.paid_at.is_(None),
    )
    .values(
        paid_at=bindparam("now"),
        amount_total_cents=bindparam("amount"),
        email=bindparam("payer_email"),
    )
)
_SETTLE_ITEMS = (
    update(_items)
    .where(_items.c.order_id == bindparam("order"), _items.c.status == bindparam("from_status"))
    .values(status=bindparam("to_status"))
    .returning(_items.c.tier_id, _items.c.quantity)
)


@dataclass(frozen=True, slots=True)
class Payment:
    """What Stripe says was paid (recorded on the order when it is captured)."""

    amount_total_cents: int | None = None
    email: str | None = None


def merge_lines(items: Sequence[tuple[Tier, int]]) -> list[tuple[Tier, int]]:
    """One line per tier (quantities added), in tier-id order.

    The fixed order matters on PostgreSQL: two carts locking the same rows in opposite orders
    would deadlock; in one global order they queue instead.
    """
    merged: dict[str, tuple[Tier, int]] = {}
    for tier, quantity in items:
        _, before = merged.get(tier.id, (tier, 0))
        merged[tier.id] = (tier, before + quantity)
    return [merged[tier_id] for tier_id in sorted(merged)]


async def _take(session: AsyncSession, project_id: str, tier_id: str, quantity: int) -> bool:
    params = {"tier": tier_id, "project": project_id, "quantity": quantity}
    return (await session.execute(_TAKE, params)).first() is not None


async def _shortage(session: AsyncSession, tier: Tier, requested: int) -> Conflict:
    """The refusal for a line whose conditional update matched nothing (read for the message)."""
    available = (await session.execute(_AVAILABLE, {"tier": tier.id})).scalar()
    if not available or available <= 0:
        return SoldOut(tier)
    return InsufficientInventory(tier, requested, int(available))


async def reserve(
    session: AsyncSession,
    project_id: str,
    items: Sequence[tuple[Tier, int]],
    *,
    hold: timedelta,
    email: str | None = None,
    now: datetime | None = None,
) -> Order:
    """Take the stock of every line and write a pending order holding it, or raise.

    A refused line raises before anything is committed: the caller's transaction rolls back
    and the lines taken before it go back with it (the cart is all-or-nothing).
    """
    lines = merge_lines(items)
    for tier, quantity in lines:
        if not await _take(session, project_id, tier.id, quantity):
            raise await _shortage(session, tier, quantity)
    now = now or utcnow()
    order = Order(
        project_id=project_id,
        status="pending",
        email=email,
        amount_total_cents=sum(tier.price_cents * quantity for tier, quantity in lines),
        currency=lines[0][0].currency if lines else "usd",
        expires_at=now + hold,
    )
    session.add(order)
    await session.flush()
    session.add_all(
        OrderItem(
            order_id=order.id,
            tier_id=tier.id,
            quantity=quantity,
            unit_amount_cents=tier.price_cents,
            status="held",
        )
        for tier, quantity in lines
    )
    await session.flush()
    return order


def _payment_values(order: Order, payment: Payment) -> dict[str, Any]:
    amount = payment.amount_total_cents
    return {
        "order": order.id,
        "now": utcnow(),
        "amount": order.amount_total_cents if amount is None else amount,
        "payer_email": payment.email or order.email,
    }


async def capture(session: AsyncSession, order: Order, payment: Payment | None = None) -> bool:
    """pending → paid and its held items → captured (the stock was taken at reservation).

    False when the order was not pending (paid twice, or released first: see `capture_late`).
    """
    values = _payment_values(order, payment or Payment())
    flipped = await session.execute(_PAY, {**values, "from_status": "pending"})
    if flipped.first() is None:
        return False
    await _settle_items(session, order.id, "held", "captured")
    return True


class _StockGone(Exception):
    """Internal: rolls the late capture's savepoint back."""


async def capture_late(session: AsyncSession, order: Order, payment: Payment | None = None) -> bool:
    """A payment for an order whose hold was already released: take the stock again.

    All-or-nothing in a savepoint; True when the order is now paid and captured. When some
    stock is gone by now nothing is taken and the order stays `expired` with `paid_at` set
    (paid, not fulfilled: to be refunded) — our stock never goes below zero.
    """
    values = _payment_values(order, payment or Payment())
    try:
        async with session.begin_nested():
            if (await session.execute(_PAY, {**values, "from_status": "expired"})).first() is None:
                return False
            for tier_id, quantity in await _settle_items(session, order.id, "released", "captured"):
                if not await _take(session, order.project_id, tier_id, quantity):
                    raise _StockGone()
    except _StockGone:
        await session.execute(_PAID_UNFULFILLED, values)
        log.warning("order_paid_after_release_unfulfilled", order_id=order.id)
        return False
    return True


async def release(session: AsyncSession, order: Order, status: str = "expired") -> bool:
    """pending → `status`, and each held item's stock given back — exactly once.

    The conditional flip of the order is the guard: a concurrent or repeated call matches
    no row and gives nothing back. False when the order was not pending.
    """
    flipped = await session.execute(_EXPIRE, {"order": order.id, "to_status": status})
    if flipped.first() is None:
        return False
    for tier_id, quantity in await _settle_items(session, order.id, "held", "released"):
        await session.execute(_GIVE_BACK, {"tier": tier_id, "quantity": quantity})
    return True


async def _settle_items(
    session: AsyncSession, order_id: str, from_status: str, to_status: str
) -> list[tuple[str, int]]:
    rows = await session.execute(
        _SETTLE_ITEMS, {"order": order_id, "from_status": from_status, "to_status": to_status}
    )
    # Sorted like reservations, so concurrent give-backs and takes lock rows in one order.
    return sorted((str(tier_id), int(quantity)) for tier_id, quantity in rows)


async def release_expired(session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """The sweeper: give back the stock of pending orders past `expires_at`; safe to race."""
    expired = await session.scalars(
        select(Order)
        .where(Order.status == "pending", Order.expires_at < now)
        .order_by(Order.expires_at)
        .limit(limit)
    )
    return sum([await release(session, order) for order in expired.all()])
