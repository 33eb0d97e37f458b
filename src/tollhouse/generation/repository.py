"""Timepoint queries, always scoped by project."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation.models import GenerationLog, ImageDeletion, Timepoint


async def by_id(
    session: AsyncSession, project_id: str, timepoint_id: uuid.UUID
) -> Timepoint | None:
    return await session.scalar(
        select(Timepoint).where(Timepoint.project_id == project_id, Timepoint.id == timepoint_id)
    )


async def by_id_any_project(session: AsyncSession, timepoint_id: uuid.UUID) -> Timepoint | None:
    """Only for links that carry their own authority (public images, signed URLs)."""
    return await session.get(Timepoint, timepoint_id)


async def by_slug(session: AsyncSession, project_id: str, slug: str) -> Timepoint | None:
    return await session.scalar(
        select(Timepoint).where(Timepoint.project_id == project_id, Timepoint.slug == slug)
    )


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return await session.scalar(select(Timepoint.id).where(Timepoint.slug == slug)) is not None


def visible_filter(viewer_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Public rows, plus the viewer's own."""
    if viewer_id is None:
        return Timepoint.visibility == "public"
    return or_(Timepoint.visibility == "public", Timepoint.user_id == viewer_id)


async def public_completed(
    session: AsyncSession,
    project_id: str,
    *,
    on: Sequence[tuple[int, int]] = (),
    limit: int,
) -> Sequence[Timepoint]:
    """Public, completed, not-deleted timepoints, those with an image first, newest first;
    with `on`, only those whose (month, day) is one of them."""
    query = listing(project_id, status="completed", where=[Timepoint.visibility == "public"])
    if on:
        query = query.where(
            or_(*((Timepoint.month == month) & (Timepoint.day == day) for month, day in on))
        )
    query = query.order_by(
        Timepoint.image_key.is_(None), Timepoint.created_at.desc(), Timepoint.id
    ).limit(limit)
    return (await session.scalars(query)).all()


async def page(
    session: AsyncSession,
    query: Select[Timepoint],
    page_number: int,
    page_size: int,
) -> tuple[Sequence[Timepoint], int]:
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Timepoint.created_at.desc(), Timepoint.id.desc())
        .limit(page_size)
        .offset((page_number - 1) * page_size)
    )
    return rows.all(), total


def listing(
    project_id: str,
    *,
    status: str | None,
    where: Sequence[ColumnElement[bool]] = (),
) -> Select[Timepoint]:
    """Not-deleted timepoints of a project, optionally of one status."""
    query = select(Timepoint).where(
        Timepoint.project_id == project_id, Timepoint.is_deleted.is_(False), *where
    )
    if status is not None:
        query = query.where(Timepoint.status == status)
    return query


async def of_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[Timepoint]:
    """Every timepoint of a user, soft-deleted ones included (for their export)."""
    rows = await session.scalars(
        select(Timepoint).where(Timepoint.user_id == user_id).order_by(Timepoint.created_at)
    )
    return rows.all()


async def remove(session: AsyncSession, timepoint: Timepoint) -> None:
    """Delete the row; its image is queued for the storage sweeper in the same transaction."""
    if timepoint.image_key is not None:
        session.add(ImageDeletion(image_key=timepoint.image_key))
    await session.execute(delete(Timepoint).where(Timepoint.id == timepoint.id))


async def image_deletions(session: AsyncSession, limit: int) -> Sequence[ImageDeletion]:
    rows = await session.scalars(select(ImageDeletion).order_by(ImageDeletion.id).limit(limit))
    return rows.all()


async def forget_image_deletions(session: AsyncSession, ids: Sequence[int]) -> None:
    await session.execute(delete(ImageDeletion).where(ImageDeletion.id.in_(ids)))


async def fail_abandoned(
    session: AsyncSession, started_before: datetime, now: datetime, error: str
) -> int:
    """Processing rows whose process died: failed (their holds expire on their own)."""
    result = await session.execute(
        update(Timepoint)
        .where(Timepoint.status == "processing", Timepoint.created_at < started_before)
        .values(status="failed", error_message=error, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def add_logs(session: AsyncSession, logs: Sequence[GenerationLog]) -> None:
    session.add_all(logs)


async def latest_child(
    session: AsyncSession,
    project_id: str,
    parent_id: uuid.UUID,
    viewer_id: uuid.UUID | None,
    sees_all: bool = False,
) -> Timepoint | None:
    """The most recently made undeleted timepoint whose parent is `parent_id`, among those
    the viewer may see (all of them for `sees_all`: admins)."""
    where = [
        Timepoint.project_id == project_id,
        Timepoint.parent_id == parent_id,
        Timepoint.is_deleted.is_(False),
    ]
    if not sees_all:
        where.append(visible_filter(viewer_id))
    return await session.scalar(
        select(Timepoint)
        .where(*where)
        .order_by(Timepoint.created_at.desc(), Timepoint.id.desc())
        .limit(1)
    )
