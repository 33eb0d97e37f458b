"""The inbox: insert an external event first, then handle it, in one transaction.

    INSERT INTO webhook_inbox (source, event_id, …) ON CONFLICT DO NOTHING RETURNING id

A second delivery of the same event (Stripe retries, concurrent deliveries, an Apple
notification resent) finds the row and has no effect; a concurrent one waits on the unique
index until the first commits. When handling fails the transaction rolls back, the row goes
with it, and the sender's retry is handled afresh.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.models import InboxEvent
from tollhouse.db.dialect import insert_ignoring_conflicts

RECENT_LIMIT = 20


async def first_delivery(
    session: AsyncSession,
    source: str,
    event_id: str,
    type: str,
    *,
    project_id: str | None = None,
    summary: dict[str, Any] | None = None,
) -> bool:
    """Record the event; False when it was recorded before (the caller then does nothing)."""
    inserted = await session.scalar(
        insert_ignoring_conflicts(session, InboxEvent)
        .values(
            source=source,
            event_id=event_id,
            type=type,
            project_id=project_id,
            summary=summary,
        )
        .returning(InboxEvent.id)
    )
    return inserted is not None


async def recent(
    session: AsyncSession, project_id: str, limit: int = RECENT_LIMIT, offset: int = 0
) -> list[InboxEvent]:
    """The project's latest events, newest first (summaries only, never payloads)."""
    rows = await session.scalars(
        select(InboxEvent)
        .where(InboxEvent.project_id == project_id)
        .order_by(InboxEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


async def count(session: AsyncSession, project_id: str) -> int:
    total = await session.scalar(
        select(func.count()).select_from(InboxEvent).where(InboxEvent.project_id == project_id)
    )
    return total or 0
