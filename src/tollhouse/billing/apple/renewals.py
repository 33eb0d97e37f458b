"""Monthly grants for yearly Apple subscriptions (the grant cadence is not the billing one).

A yearly transaction grants its first month when claimed; this job grants each later month
when it starts (purchase date + k months, while the period lasts). Each month is one ledger
grant keyed `apple:{transactionId}:{YYYY-MM}`, and `months_granted` moves by compare-and-set
first, so replicas running the job at once, or a refund landing meanwhile, grant nothing twice.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.apple.models import AppleTransaction
from tollhouse.billing.apple.purchases import ledger_key
from tollhouse.billing.gateway.products import Catalogue
from tollhouse.ledger import service as ledger

MONTHS_PER_YEAR = 12
# Months still owed are caught up for this long after a period ends (a job that was down).
CATCH_UP = timedelta(days=35)
BATCH = 500


def add_months(start: datetime, months: int) -> datetime:
    """The same day `months` later, clamped to the month's end (Jan 31 + 1 → Feb 28/29)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def months_due(purchased_at: datetime, expires_at: datetime | None, now: datetime) -> int:
    """How many months of the period have started by `now` (at most twelve)."""
    due = 0
    while due < MONTHS_PER_YEAR:
        start = add_months(purchased_at, due)
        if start > now or (expires_at is not None and start >= expires_at):
            break
        due += 1
    return due


async def grant_due_months(session: AsyncSession, catalogue: Catalogue, now: datetime) -> int:
    yearly = catalogue.yearly_plan_ids()
    if not yearly:
        return 0
    rows = await session.scalars(
        select(AppleTransaction)
        .where(
            AppleTransaction.kind == "subscription",
            AppleTransaction.product_id.in_(yearly),
            AppleTransaction.refunded_at.is_(None),
            AppleTransaction.months_granted < MONTHS_PER_YEAR,
            AppleTransaction.expires_at > now - CATCH_UP,
        )
        .order_by(AppleTransaction.purchased_at)
        .limit(BATCH)
    )
    granted = 0
    for row in rows.all():
        granted += await _grant_months(session, catalogue, row, now)
    return granted


async def _grant_months(
    session: AsyncSession, catalogue: Catalogue, row: AppleTransaction, now: datetime
) -> int:
    done = row.months_granted
    due = months_due(row.purchased_at, row.expires_at, now)
    if due <= done:
        return 0
    moved = await session.scalar(
        update(AppleTransaction)
        .where(
            AppleTransaction.transaction_id == row.transaction_id,
            AppleTransaction.months_granted == done,
            AppleTransaction.refunded_at.is_(None),
        )
        .values(months_granted=due)
        .returning(AppleTransaction.transaction_id)
        .execution_options(synchronize_session=False)
    )
    if moved is None:
        return 0  # another replica, or a refund, got there first
    product = catalogue.get(row.product_id)
    name = product.name if product is not None else row.product_id
    for month in range(done, due):
        start = add_months(row.purchased_at, month)
        await ledger.grant(
            session,
            row.account_id,
            row.credits,
            "subscription_grant",
            description=f"App Store: {name}, month {month + 1} ({start:%Y-%m})",
            reference_id=row.transaction_id,
            idempotency_key=f"{ledger_key(row.transaction_id)}:{start:%Y-%m}",
        )
    return due - done
