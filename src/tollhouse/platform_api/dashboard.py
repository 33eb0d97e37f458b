"""The hosted dashboard's data (`GET /api/dashboard`, `/api/dashboard/totals`; contract §3.12).

Subscription figures come from billing's `subscriptions` table (Stripe's state as the webhook
last re-read it): `activeSubs` counts `active` and `trialing`, `cancelingSubs` those set to
cancel at period end and not canceled yet (the original also counted fully canceled ones),
`mrr` sums the amounts of `active` ones. Store figures (`storeSalesCount`,
`storeTotalRevenue`) count paid cart orders (cents). The webhook section carries summaries from the
inbox, never full Stripe payloads; `X-Publishable-Key` beside a secret key does not switch
projects: a secret key names exactly one project.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing import cart, inbox
from tollhouse.billing.models import Subscription
from tollhouse.billing.stripe import subscriptions as billing_subscriptions
from tollhouse.billing.stripe.subscriptions import ENTITLED_STATUSES
from tollhouse.catalog import service as catalog
from tollhouse.catalog.models import Tier
from tollhouse.identity.caller import Caller
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.metering import quota
from tollhouse.metering.models import UsageCounter
from tollhouse.metering.plans import plan_of
from tollhouse.platform_api import wire
from tollhouse.platform_api.customers import publishable_key
from tollhouse.tenancy import service as tenancy

SERIES_DAYS = 30
LOW_STOCK = 5
MAX_CUSTOMERS = 500


def _latest_by_user(subscriptions: list[Subscription]) -> dict[Any, Subscription]:
    """Each user's subscription that counts: the newest entitled one, else the newest."""
    latest: dict[Any, Subscription] = {}
    for sub in subscriptions:  # newest first
        held = latest.get(sub.user_id)
        if held is None or (
            sub.status in ENTITLED_STATUSES and held.status not in ENTITLED_STATUSES
        ):
            latest[sub.user_id] = sub
    return latest


def _subscription_fields(sub: Subscription | None) -> dict[str, Any]:
    return {
        "status": sub.status if sub else "none",
        "currentPeriodEnd": wire.iso(sub.current_period_end) if sub else None,
        "canceledAt": wire.iso(sub.canceled_at) if sub else None,
        "cancelAtPeriodEnd": sub.cancel_at_period_end if sub else False,
        "subscriptionId": sub.stripe_subscription_id if sub else None,
        "stripeCustomerId": sub.stripe_customer_id if sub else None,
        "priceId": sub.price_id if sub else None,
        "amount": sub.amount_cents if sub else None,
        "currency": sub.currency if sub else None,
    }


def _metrics(subscriptions: list[Subscription]) -> dict[str, int]:
    """The original's names and, beside them, the SDK's (`activeSubscriptions`, …)."""
    active = sum(1 for s in subscriptions if s.status in ("active", "trialing"))
    canceling = sum(1 for s in subscriptions if s.cancel_at_period_end and s.status != "canceled")
    return {
        "activeSubs": active,
        "activeSubscriptions": active,
        "cancelingSubs": canceling,
        "cancelingSubscriptions": canceling,
        "mrr": sum(s.amount_cents for s in subscriptions if s.status == "active"),
    }


async def _webhook(session: AsyncSession, project_id: str) -> dict[str, Any]:
    events = await inbox.recent(session, project_id)
    return {
        "lastEventAt": wire.iso(events[0].received_at) if events else None,
        "recent": [
            {
                "id": event.event_id,
                "type": event.type,
                "receivedAt": wire.iso(event.received_at),
                "summary": event.summary,
            }
            for event in events
        ],
    }


async def _customers(
    session: AsyncSession,
    project_id: str,
    tiers: dict[str, Tier],
    pk: str | None,
    subscriptions: list[Subscription],
) -> list[dict[str, Any]]:
    """The newest customers with their current period's usage and subscription."""
    now = utcnow()
    latest = _latest_by_user(subscriptions)
    rows = await session.execute(
        select(User, UsageCounter)
        .outerjoin(UsageCounter, UsageCounter.user_id == User.id)
        .where(User.project_id == project_id, User.is_active.is_(True))
        .order_by(User.created_at.desc(), User.id)
        .limit(MAX_CUSTOMERS)
    )
    customers = []
    for user, counter in rows:
        sub = latest.get(user.id)
        entitled = sub is not None and sub.status in ENTITLED_STATUSES
        plan = sub.plan if sub is not None and entitled else plan_of(user)
        tier = tiers.get(plan)
        current = counter is not None and counter.plan == plan and counter.period_end > now
        customers.append(
            {
                "userId": user.external_id,
                "email": user.email,
                "plan": plan,
                **_subscription_fields(sub),
                "usageCount": counter.count if current and counter else 0,
                "limit": wire.limit_value(tier.limit) if tier is not None else 0,
                "periodStart": wire.iso(counter.period_start) if current and counter else None,
                "periodEnd": wire.iso(counter.period_end) if current and counter else None,
                "publishableKey": pk,
                "createdAt": wire.iso(user.created_at),
            }
        )
    return customers


async def _usage_this_period(session: AsyncSession, project_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(UsageCounter.count), 0)).where(
            UsageCounter.project_id == project_id, UsageCounter.period_end > utcnow()
        )
    )
    return int(total or 0)


async def _series(session: AsyncSession, project_id: str) -> list[dict[str, Any]]:
    """Units per UTC day for the last 30 days, oldest first, days without usage as 0."""
    today = utcnow().date()
    since = today - timedelta(days=SERIES_DAYS - 1)
    units: dict[date, int] = dict(await quota.daily_series(session, project_id, since))
    days = (since + timedelta(days=n) for n in range(SERIES_DAYS))
    return [{"day": day.isoformat(), "units": units.get(day, 0)} for day in days]


async def _secret_key_display(session: AsyncSession, caller: Caller) -> str | None:
    keys = await tenancy.keys_of_project(session, caller.project_id)
    if caller.key is not None:
        for key in keys:
            if key.id == caller.key.key_id:
                return key.display
    return None


async def dashboard(session: AsyncSession, caller: Caller) -> dict[str, Any]:
    project_id = caller.project_id
    tiers = await catalog.tiers_of_project(session, project_id)
    products = [tier for tier in tiers if tier.billing_mode == "one_off"]
    plans = {tier.slug: tier for tier in tiers if tier.billing_mode == "subscription"}
    pk = await publishable_key(session, project_id)
    mode = caller.key.mode if caller.key is not None else None
    subscriptions = await billing_subscriptions.of_project(session, project_id)
    sales_count, sales_revenue = await cart.sales(session, project_id)
    webhook = await _webhook(session, project_id)
    return {
        "metrics": {
            **_metrics(subscriptions),
            "usageThisPeriod": await _usage_this_period(session, project_id),
            "storeSalesCount": sales_count,
            "storeTotalRevenue": sales_revenue,
            "lowStockProducts": sum(
                1 for p in products if p.inventory is not None and 0 < p.inventory <= LOW_STOCK
            ),
            "totalInventory": sum(p.inventory or 0 for p in products),
        },
        "customers": await _customers(session, project_id, plans, pk, subscriptions),
        "tiers": [wire.tier(tier) for tier in tiers],
        "keys": {
            "publishableKey": pk,
            "secretKey": await _secret_key_display(session, caller),
            "platformId": caller.platform_id,
            "mode": mode,
        },
        "webhook": webhook,
        "webhookStatus": {
            "lastEventAt": webhook["lastEventAt"],
            "status": "receiving" if webhook["lastEventAt"] else "no_events",
        },
        "usageSeries": await _series(session, project_id),
        "filters": {"platformId": caller.platform_id, "publishableKey": pk, "mode": mode},
    }


async def totals(session: AsyncSession, caller: Caller) -> dict[str, Any]:
    """Across the platform's live projects; the SDK's `totalMRR`, `totalCustomers` and
    `totalRevenue` (store sales + this month's recurring revenue, cents) beside the original's."""
    assert caller.platform_id is not None
    live = [
        project
        for project in await tenancy.projects_of_platform(session, caller.platform_id)
        if project.mode == "live"
    ]
    products = 0
    sales = 0
    subscriptions: list[Subscription] = []
    for project in live:
        products += len(await catalog.tiers_of_project(session, project.id))
        subscriptions += await billing_subscriptions.of_project(session, project.id)
        sales += (await cart.sales(session, project.id))[1]
    metrics = _metrics(subscriptions)
    customers = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.project_id.in_([p.id for p in live]), User.is_active.is_(True))
    )
    return {
        "totals": {
            **metrics,
            "totalMRR": metrics["mrr"],
            "totalCustomers": customers or 0,
            "totalRevenue": sales + metrics["mrr"],
            "totalProducts": products,
            "liveProjects": len(live),
        },
        "platformId": caller.platform_id,
    }
