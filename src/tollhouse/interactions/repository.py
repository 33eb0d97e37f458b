"""Chat session queries, always scoped by project (and by owner where a caller asks)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.interactions.models import InteractionMessage, InteractionSession


def _owned_by(owner: uuid.UUID | None) -> ColumnElement[bool]:
    if owner is None:
        return InteractionSession.user_id.is_(None)
    return InteractionSession.user_id == owner


async def by_id(
    session: AsyncSession, project_id: str, session_id: str
) -> InteractionSession | None:
    return await session.scalar(
        select(InteractionSession).where(
            InteractionSession.project_id == project_id, InteractionSession.id == session_id
        )
    )


async def of_timepoint(
    session: AsyncSession, project_id: str, timepoint_id: uuid.UUID, owner: uuid.UUID | None
) -> Sequence[InteractionSession]:
    return (
        await session.scalars(
            select(InteractionSession)
            .where(
                InteractionSession.project_id == project_id,
                InteractionSession.timepoint_id == timepoint_id,
                _owned_by(owner),
            )
            .order_by(InteractionSession.updated_at.desc(), InteractionSession.id)
        )
    ).all()


async def of_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[InteractionSession]:
    return (
        await session.scalars(
            select(InteractionSession)
            .where(InteractionSession.user_id == user_id)
            .order_by(InteractionSession.created_at)
        )
    ).all()


async def messages(
    session: AsyncSession, session_ids: Sequence[str]
) -> dict[str, list[InteractionMessage]]:
    """Each session's messages, oldest first (one query for many sessions)."""
    found: dict[str, list[InteractionMessage]] = {session_id: [] for session_id in session_ids}
    if not session_ids:
        return found
    rows = await session.scalars(
        select(InteractionMessage)
        .where(InteractionMessage.session_id.in_(session_ids))
        .order_by(InteractionMessage.id)
    )
    for row in rows:
        found[row.session_id].append(row)
    return found


def add_messages(session: AsyncSession, rows: Sequence[InteractionMessage]) -> None:
    session.add_all(rows)


async def touch(session: AsyncSession, session_id: str, now: datetime) -> None:
    await session.execute(
        update(InteractionSession).where(InteractionSession.id == session_id).values(updated_at=now)
    )


async def remove(session: AsyncSession, session_ids: Sequence[str]) -> None:
    """Messages first: SQLite without enforced cascades would keep them otherwise."""
    if not session_ids:
        return
    await session.execute(
        delete(InteractionMessage).where(InteractionMessage.session_id.in_(session_ids))
    )
    await session.execute(delete(InteractionSession).where(InteractionSession.id.in_(session_ids)))
