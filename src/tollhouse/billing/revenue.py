"""Sales per UTC day, for the console's revenue chart: paid orders on the day they were paid,
and subscriptions on the day they started (their first period's amount). Renewals are not
counted: Stripe's invoices are not kept here, and MRR says what recurs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.models import Order, Subscription

# A subscription that never became one is no sale.
_NOT_SALES = ("incomplete", "incomplete_expired")


async def sales_per_day(
    session: AsyncSession, project_ids: Sequence[str], since: date
) -> list[tuple[date, int]]:
    """Cents of sales per UTC day from `since` on, oldest first; days without sales absent."""
    if not project_ids:
        return []
    start = datetime.combine(since, time(), UTC)
    orders = await session.execute(
        select(Order.paid_at, Order.amount_total_cents).where(
            Order.project_id.in_(project_ids),
            Order.status == "paid",
            Order.paid_at >= start,
        )
    )
    started = await session.execute(
        select(Subscription.created_at, Subscription.amount_cents).where(
            Subscription.project_id.in_(project_ids),
            Subscription.status.not_in(_NOT_SALES),
            Subscription.created_at >= start,
        )
    )
    days: dict[date, int] = defaultdict(int)
    for moment, cents in [*orders, *started]:
        days[moment.astimezone(UTC).date()] += int(cents or 0)
    return sorted(days.items())
