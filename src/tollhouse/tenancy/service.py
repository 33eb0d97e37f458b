"""Tenancy rules. Today: make sure the operator's home platform and live project exist."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.dialect import insert_ignoring_conflicts
from tollhouse.tenancy.models import Platform, Project

HOME_PLATFORM_ID = "plt_home"


async def ensure_home_project(
    session: AsyncSession, platform_name: str, project_name: str
) -> Project:
    """Create the home platform and its live project on first start; safe to race."""
    await session.execute(
        insert_ignoring_conflicts(session, Platform).values(
            id=HOME_PLATFORM_ID, name=platform_name, is_home=True
        )
    )
    await session.execute(
        insert_ignoring_conflicts(session, Project).values(
            platform_id=HOME_PLATFORM_ID,
            name=project_name,
            mode="live",
        )
    )
    project = await session.scalar(
        select(Project).where(
            Project.platform_id == HOME_PLATFORM_ID,
            Project.name == project_name,
            Project.mode == "live",
        )
    )
    assert project is not None
    return project
