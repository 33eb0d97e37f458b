"""Subscriptions as Stripe says they are now, and the plan they give.

Webhook events arrive late, twice, and out of order; so an event only says *which*
subscription changed. We re-read it from Stripe (`retrieve`) and write what Stripe says now,
upserting by `stripe_subscription_id` (one statement). Whatever order the events land in,
the last write is Stripe's current state.

The plan is the tier whose Stripe price (or, after a price change, product) the subscription
pays for — never `metadata.tier`, which the original trusted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.models import SUBSCRIPTION_STATUSES, Subscription
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.catalog.models import Tier
from tollhouse.db.dialect import upsert
from tollhouse.kit.clock import utcnow
from tollhouse.tenancy.models import Project

log = structlog.get_logger("tollhouse.stripe")

# Statuses that keep the paid plan. `past_due` is included: Stripe is still retrying the
# payment (dunning) and the subscriber keeps service until it gives up (`unpaid`/`canceled`).
ENTITLED_STATUSES = ("active", "trialing", "past_due")


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


def stripe_id(value: Any) -> str | None:
    """An expandable field: an id, or the expanded object's id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _first_item(sub: dict[str, Any]) -> dict[str, Any]:
    items = (sub.get("items") or {}).get("data") or []
    return items[0] if items else {}


async def _tier_of(session: AsyncSession, project_id: str, price: dict[str, Any]) -> Tier | None:
    """The tier a price belongs to: its current price, or its product (an older price)."""
    price_id = stripe_id(price)
    product_id = stripe_id(price.get("product"))
    conditions = [Tier.stripe_price_id == price_id]
    if product_id:
        conditions.append(Tier.stripe_product_id == product_id)
    rows = await session.scalars(
        select(Tier).where(Tier.project_id == project_id, or_(*conditions))
    )
    tiers = list(rows)
    for tier in tiers:
        if tier.stripe_price_id == price_id:
            return tier
    return tiers[0] if tiers else None


async def subscription_row(session: AsyncSession, subscription_id: str) -> Subscription | None:
    return await session.scalar(
        select(Subscription).where(Subscription.stripe_subscription_id == subscription_id)
    )


async def sync(
    session: AsyncSession,
    gateway: StripeGateway,
    *,
    project: Project,
    account_id: str | None,
    subscription_id: str,
    user_id: uuid.UUID | None,
    plan_of: Callable[[dict[str, Any]], str | None] | None = None,
) -> Subscription | None:
    """Re-read the subscription from Stripe and store its current state.

    `user_id` is needed only for a subscription we have not stored yet. None when the
    subscription cannot be attributed (no user, or a price of no tier): recorded, not applied.
    `plan_of` names the plan of a price where plans are not tiers (the home catalogue).
    """
    sub = await gateway.retrieve_subscription(
        mode=project.mode, account_id=account_id, subscription_id=subscription_id
    )
    existing = await subscription_row(session, subscription_id)
    if existing is not None:
        if existing.project_id != project.id:
            log.warning("stripe_subscription_project_mismatch", subscription=subscription_id)
            return None
        user_id = existing.user_id
    item = _first_item(sub)
    price = item.get("price") or {}
    tier = await _tier_of(session, project.id, price) if price and plan_of is None else None
    plan = plan_of(price) if plan_of is not None and price else (tier.slug if tier else None)
    status = sub.get("status")
    if user_id is None or plan is None or status not in SUBSCRIPTION_STATUSES:
        log.warning(
            "stripe_subscription_unattributed",
            subscription=subscription_id,
            has_user=user_id is not None,
            has_tier=plan is not None,
            status=status,
        )
        return None
    quantity = item.get("quantity") or 1
    values: dict[str, Any] = {
        "stripe_customer_id": stripe_id(sub.get("customer")),
        "plan": plan,
        "price_id": stripe_id(price),
        "status": status,
        "amount_cents": int(price.get("unit_amount") or 0) * int(quantity),
        "currency": str(price.get("currency") or (tier.currency if tier else "usd"))[:3],
        "current_period_end": _timestamp(
            item.get("current_period_end") or sub.get("current_period_end")
        ),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "canceled_at": _timestamp(sub.get("canceled_at")),
        "updated_at": utcnow(),
    }
    await session.execute(
        upsert(session, Subscription, ["stripe_subscription_id"], values).values(
            project_id=project.id, user_id=user_id, stripe_subscription_id=subscription_id, **values
        )
    )
    return await session.scalar(
        select(Subscription)
        .where(Subscription.stripe_subscription_id == subscription_id)
        .execution_options(populate_existing=True)
    )


async def entitled_plan(session: AsyncSession, project_id: str, user_id: uuid.UUID) -> str | None:
    """The plan of the user's newest entitled subscription in the project, if any."""
    plan = await session.scalar(
        select(Subscription.plan)
        .where(
            Subscription.project_id == project_id,
            Subscription.user_id == user_id,
            Subscription.status.in_(ENTITLED_STATUSES),
        )
        .order_by(Subscription.updated_at.desc())
        .limit(1)
    )
    return plan


async def latest_customer_id(
    session: AsyncSession, project_id: str, user_id: uuid.UUID
) -> str | None:
    """The user's Stripe customer id, from their latest subscription row."""
    return await session.scalar(
        select(Subscription.stripe_customer_id)
        .where(
            Subscription.project_id == project_id,
            Subscription.user_id == user_id,
            Subscription.stripe_customer_id.is_not(None),
        )
        .order_by(Subscription.created_at.desc())
        .limit(1)
    )


async def of_project(session: AsyncSession, project_id: str) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.project_id == project_id)
        .order_by(Subscription.updated_at.desc())
    )
    return list(rows)
