"""The money charts' figures: sales per day and live (active) end users per day over the
last 30 days, for a project or for all of a platform's projects of one mode."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import distinct, func, select

from tollhouse.billing import revenue
from tollhouse.console.deps import Console, ConsoleDep, ProjectDep
from tollhouse.kit.clock import utcnow
from tollhouse.metering.models import UsageDaily
from tollhouse.tenancy import service as tenancy

router = APIRouter(tags=["console"])
MONEY_DAYS = 30
Mode = Literal["test", "live"]


class DaySales(BaseModel):
    day: date
    cents: int


class DayUsers(BaseModel):
    day: date
    users: int


class MoneySeries(BaseModel):
    """Days without sales or users are absent; `since` is the first day charted."""

    since: date
    days: int
    sales: list[DaySales]
    live_users: list[DayUsers]


async def _active_users(
    console: Console, project_ids: Sequence[str], since: date
) -> list[tuple[date, int]]:
    """End users who made at least one metered call, per UTC day."""
    if not project_ids:
        return []
    rows = await console.session.execute(
        select(UsageDaily.day, func.count(distinct(UsageDaily.user_id)))
        .where(UsageDaily.project_id.in_(project_ids), UsageDaily.day >= since)
        .group_by(UsageDaily.day)
        .order_by(UsageDaily.day)
    )
    return [(day, int(users)) for day, users in rows]


async def series_of(
    console: Console, project_ids: Sequence[str], now: datetime | None = None
) -> MoneySeries:
    since = ((now or utcnow()) - timedelta(days=MONEY_DAYS - 1)).date()
    sales = await revenue.sales_per_day(console.session, project_ids, since)
    users = await _active_users(console, project_ids, since)
    return MoneySeries(
        since=since,
        days=MONEY_DAYS,
        sales=[DaySales(day=day, cents=cents) for day, cents in sales],
        live_users=[DayUsers(day=day, users=count) for day, count in users],
    )


async def platform_series(console: Console, mode: Mode) -> MoneySeries:
    projects = await tenancy.projects_of_platform(console.session, console.platform_id)
    return await series_of(console, [p.id for p in projects if p.mode == mode])


@router.get("/money/series")
async def money_series(console: ConsoleDep, mode: Mode = "live") -> MoneySeries:
    """Sales and live users per day across the platform's projects of `mode`."""
    return await platform_series(console, mode)


@router.get("/projects/{project_id}/money/series")
async def project_money_series(project: ProjectDep, console: ConsoleDep) -> MoneySeries:
    """Sales and live users per day of one project."""
    return await series_of(console, [project.id])
