"""The hosted dashboard's data (`GET /api/dashboard`, `/api/dashboard/totals`; contract §3.12).

Subscriptions, orders and Stripe webhooks arrive with the billing domain: until then their
figures (`activeSubs`, `cancelingSubs`, `mrr`, `storeSalesCount`, `storeTotalRevenue`, every
customer's `status`, the `webhook` section) are zeros, `"none"` and empty lists — true for a
project that cannot sell yet, and the shape the SDK reads. Unlike the original, the webhook
section will never carry full Stripe payloads, and `X-Publishable-Key` beside a secret key
does not switch projects: a secret key names exactly one project.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

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


async def _customers(
    session: AsyncSession, project_id: str, tiers: dict[str, Tier], pk: str | None
) -> list[dict[str, Any]]:
    """The newest customers with their current period's usage."""
    now = utcnow()
    rows = await session.execute(
        select(User, UsageCounter)
        .outerjoin(UsageCounter, UsageCounter.user_id == User.id)
        .where(User.project_id == project_id, User.is_active.is_(True))
        .order_by(User.created_at.desc(), User.id)
        .limit(MAX_CUSTOMERS)
    )
    customers = []
    for user, counter in rows:
        plan = plan_of(user)
        tier = tiers.get(plan)
        current = counter is not None and counter.plan == plan and counter.period_end > now
        customers.append(
            {
                "userId": user.external_id,
                "email": user.email,
                "plan": plan,
                "status": "none",
                "usageCount": counter.count if current and counter else 0,
                "limit": wire.limit_value(tier.limit) if tier is not None else 0,
                "periodStart": wire.iso(counter.period_start) if current and counter else None,
                "periodEnd": wire.iso(counter.period_end) if current and counter else None,
                "currentPeriodEnd": None,
                "canceledAt": None,
                "subscriptionId": None,
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
    return {
        "metrics": {
            "activeSubs": 0,
            "cancelingSubs": 0,
            "mrr": 0,
            "usageThisPeriod": await _usage_this_period(session, project_id),
            "storeSalesCount": 0,
            "storeTotalRevenue": 0,
            "lowStockProducts": sum(
                1 for p in products if p.inventory is not None and 0 < p.inventory <= LOW_STOCK
            ),
            "totalInventory": sum(p.inventory or 0 for p in products),
        },
        "customers": await _customers(session, project_id, plans, pk),
        "tiers": [wire.tier(tier) for tier in tiers],
        "keys": {
            "publishableKey": pk,
            "secretKey": await _secret_key_display(session, caller),
            "platformId": caller.platform_id,
            "mode": mode,
        },
        "webhook": {"lastEventAt": None, "recent": []},
        "usageSeries": await _series(session, project_id),
        "filters": {"platformId": caller.platform_id, "publishableKey": pk, "mode": mode},
    }


async def totals(session: AsyncSession, caller: Caller) -> dict[str, Any]:
    """Across the platform's live projects (money figures come with billing: zeros now)."""
    assert caller.platform_id is not None
    live = [
        project
        for project in await tenancy.projects_of_platform(session, caller.platform_id)
        if project.mode == "live"
    ]
    products = 0
    for project in live:
        products += len(await catalog.tiers_of_project(session, project.id))
    return {
        "totals": {
            "mrr": 0,
            "activeSubs": 0,
            "cancelingSubs": 0,
            "totalProducts": products,
            "liveProjects": len(live),
        },
        "platformId": caller.platform_id,
    }
