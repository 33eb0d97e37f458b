"""A project's end users (its `User` rows), their plans, and its usage."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from tollhouse.catalog import service as catalog
from tollhouse.console.deps import ConsoleDep, Limit, Offset, ProjectDep
from tollhouse.console.schemas import (
    DayUsage,
    EndUserOut,
    EndUserPage,
    EndUserUpdate,
    Headroom,
    HeadroomResponse,
    UsageResponse,
    UserUsage,
)
from tollhouse.identity import service as identity
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import NotFound, ValidationFailed
from tollhouse.metering import plans, quota
from tollhouse.metering.errors import UnknownPlan
from tollhouse.metering.meter import Meter, meter_of
from tollhouse.metering.models import UsageCounter
from tollhouse.platform_api import customers
from tollhouse.tenancy.models import Project

router = APIRouter(tags=["console"])
USAGE_DAYS = 30
MAX_USAGE_USERS = 1000


class EndUserNotFound(NotFound):
    code = "user_not_found"
    message = "No such user in this project."


async def _end_user(console: ConsoleDep, project: Project, user_id: uuid.UUID) -> User:
    # Scoped by the project, which is already scoped by the platform.
    user = await console.session.scalar(
        select(User).where(User.id == user_id, User.project_id == project.id)
    )
    if user is None:
        raise EndUserNotFound()
    return user


@router.get("/projects/{project_id}/users")
async def list_users(
    project: ProjectDep,
    console: ConsoleDep,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> EndUserPage:
    """The project's end users, newest first; `q` narrows to emails and ids containing it."""
    total, rows = await identity.users_of_project(
        console.session, project.id, limit=limit, offset=offset, q=q
    )
    return EndUserPage(
        limit=limit, offset=offset, total=total, users=[EndUserOut.of(u) for u in rows]
    )


@router.get("/projects/{project_id}/users/{user_id}")
async def get_user(user_id: uuid.UUID, project: ProjectDep, console: ConsoleDep) -> EndUserOut:
    return EndUserOut.of(await _end_user(console, project, user_id))


async def headroom_of(console: ConsoleDep, meter: Meter, user: User) -> Headroom | None:
    """The user's quota now, as the metered routes see it: the effective plan (a subscription
    wins), the live count of this process's meter. None when that plan is no tier."""
    plan = await plans.effective_plan_of(console.session, user)
    try:
        usage = await meter.check(console.session, user, plan)
    except UnknownPlan:
        return None
    return Headroom(
        plan=usage.plan,
        used=usage.count,
        limit=usage.limit,
        remaining=usage.remaining,
        period_start=usage.period_start,
        period_end=usage.period_end,
    )


async def headroom_of_users(
    project: Project, console: ConsoleDep, meter: Meter, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Headroom | None]:
    """`headroom_of` for a page of the project's users (others' ids are left out)."""
    users = await console.session.scalars(
        select(User).where(User.id.in_(user_ids), User.project_id == project.id)
    )
    return {user.id: await headroom_of(console, meter, user) for user in users}


@router.get("/projects/{project_id}/users/{user_id}/quota")
async def get_user_quota(
    user_id: uuid.UUID, project: ProjectDep, console: ConsoleDep, request: Request
) -> HeadroomResponse:
    """Used, limit and remaining in the user's current period."""
    user = await _end_user(console, project, user_id)
    return HeadroomResponse(quota=await headroom_of(console, meter_of(request), user))


@router.patch("/projects/{project_id}/users/{user_id}")
async def update_user(
    user_id: uuid.UUID, body: EndUserUpdate, project: ProjectDep, console: ConsoleDep
) -> EndUserOut:
    user = await _end_user(console, project, user_id)
    if body.plan not in await catalog.subscription_tier_slugs(console.session, project.id):
        raise ValidationFailed(
            "The plan must be one of the project's subscription tiers.", code="unknown_plan"
        )
    previous = user.plan
    user.plan = body.plan
    await console.session.flush()
    await console.audit(
        "user.update", str(user.id), project_id=project.id, plan=body.plan, previous_plan=previous
    )
    return EndUserOut.of(user)


@router.delete("/projects/{project_id}/users/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, project: ProjectDep, console: ConsoleDep) -> None:
    """Erase the end user as the Platform API's customer deletion does (money rows stay)."""
    user = await _end_user(console, project, user_id)
    await customers.delete(console.session, user, console.pepper)
    await console.audit("user.delete", str(user_id), project_id=project.id)


@router.get("/projects/{project_id}/usage")
async def usage(project: ProjectDep, console: ConsoleDep) -> UsageResponse:
    """Each end user's count in their current period, and the project's last 30 days."""
    since = (utcnow() - timedelta(days=USAGE_DAYS - 1)).date()
    rows = await console.session.execute(
        select(UsageCounter, User.external_id)
        .join(User, User.id == UsageCounter.user_id)
        .where(UsageCounter.project_id == project.id)
        .order_by(UsageCounter.count.desc(), UsageCounter.user_id)
        .limit(MAX_USAGE_USERS)
    )
    users = [
        UserUsage(
            user_id=counter.user_id,
            external_id=external_id,
            plan=counter.plan,
            count=counter.count,
            period_start=counter.period_start,
            period_end=counter.period_end,
        )
        for counter, external_id in rows
    ]
    meter = console.meter  # its counts not flushed yet: the chart is current, not a batch late
    unflushed = partial(meter.unflushed_days, project.id, since) if meter else None
    series = await quota.daily_series(console.session, project.id, since, unflushed=unflushed)
    return UsageResponse(
        users=users, daily=[DayUsage(day=day, units=units) for day, units in series], since=since
    )
