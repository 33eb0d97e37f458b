"""The operator's cross-platform view (platform-contract §1.6): how many platforms, paying
and trialing, their live and test end users, MRR and the overage estimate. The operator's
own (home) platform is left out."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.config import Settings
from tollhouse.identity.models import User
from tollhouse.kit.clock import epoch_ms
from tollhouse.tenancy.models import Developer, Platform, Project


async def _users_per_platform(session: AsyncSession) -> dict[str, dict[str, int]]:
    rows = await session.execute(
        select(Project.platform_id, Project.mode, func.count(User.id))
        .join(User, User.project_id == Project.id)
        .where(User.is_active.is_(True))
        .group_by(Project.platform_id, Project.mode)
    )
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"live": 0, "test": 0})
    for platform_id, mode, count in rows:
        counts[platform_id][mode] = count
    return counts


async def overview(
    session: AsyncSession, settings: Settings, *, limit: int, offset: int
) -> dict[str, Any]:
    users = await _users_per_platform(session)
    statuses = dict(
        (
            await session.execute(
                select(Platform.plan_status, func.count())
                .where(Platform.is_home.is_(False))
                .group_by(Platform.plan_status)
            )
        ).all()
    )
    rows = await session.execute(
        select(Platform, Developer.email)
        .outerjoin(Developer, Developer.platform_id == Platform.id)
        .where(Platform.is_home.is_(False))
        .order_by(Platform.created_at.desc(), Platform.id)
        .limit(limit)
        .offset(offset)
    )
    home = await session.scalar(select(Platform.id).where(Platform.is_home.is_(True)))
    counted = {pid: c for pid, c in users.items() if pid != home}
    live = sum(c["live"] for c in counted.values())
    included = settings.platform_included_end_users
    overage_users = sum(max(0, c["live"] - included) for c in counted.values())
    paying = statuses.get("active", 0) + statuses.get("past_due", 0)
    return {
        "totals": {
            "total_platforms": sum(statuses.values()),
            "paying_platforms": paying,
            "trialing_platforms": statuses.get("trialing", 0),
            "total_live_users": live,
            "total_test_users": sum(c["test"] for c in counted.values()),
            "mrr": paying * settings.platform_price_cents,
            "estimatedOverage": round(overage_users * settings.platform_overage_cents_per_user),
        },
        "platforms": [
            {
                "platformId": platform.id,
                "name": platform.name,
                "email": email,
                "planStatus": platform.plan_status,
                "createdAt": epoch_ms(platform.created_at),
                "live_users": users[platform.id]["live"] if platform.id in users else 0,
                "test_users": users[platform.id]["test"] if platform.id in users else 0,
            }
            for platform, email in rows
        ],
        "limit": limit,
        "offset": offset,
    }
