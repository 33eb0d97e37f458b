"""One-off background tasks with a status anyone can read (re-grounding an entity, …).

`TaskRunner.submit` records a `queued` row in the caller's transaction; once that commits,
`start` runs the work as a task of this process, marking the row `running`, then
`completed` with the work's result or `failed` with its error. The row is the task's only
state, so any replica answers its status. This runner is the small interface a real queue
will replace: submit, start, status.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import JSON, Index, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.db.engine import Database
from tollhouse.db.types import UTCDateTime
from tollhouse.kit.clock import utcnow

log = structlog.get_logger("tollhouse.tasks")

Work = Callable[[], Awaitable[dict[str, Any]]]
INTERRUPTED = "The task was interrupted: the server shut down"


class BackgroundTask(CreatedAt, Base):
    __tablename__ = "background_tasks"
    __table_args__ = (Index("ix_background_tasks_project_id_kind", "project_id", "kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(40))
    # What the task is about (an entity id).
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TaskRunner:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._running: set[asyncio.Task[None]] = set()

    @staticmethod
    def submit(
        session: AsyncSession, *, project_id: str, kind: str, subject: str, prefix: str
    ) -> BackgroundTask:
        """A queued task, added to the caller's unit of work (start it after the commit)."""
        now = utcnow()
        task = BackgroundTask(
            id=f"{prefix}_{secrets.token_hex(6)}",
            project_id=project_id,
            kind=kind,
            subject=subject,
            status="queued",
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        return task

    def start(self, task_id: str, work: Work) -> asyncio.Task[None]:
        running = asyncio.create_task(self._run(task_id, work), name=f"task:{task_id}")
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return running

    async def _set(self, task_id: str, **fields: Any) -> None:
        async with self._database.session() as session:
            task = await session.get(BackgroundTask, task_id)
            assert task is not None
            for name, value in fields.items():
                setattr(task, name, value)
            task.updated_at = utcnow()
            await session.commit()

    async def _run(self, task_id: str, work: Work) -> None:
        await self._set(task_id, status="running")
        try:
            result = await work()
        except asyncio.CancelledError:
            await asyncio.shield(self._set(task_id, status="failed", error=INTERRUPTED))
            raise
        except Exception as exc:
            log.warning("task_failed", task_id=task_id, error=str(exc))
            await self._set(task_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            await self._set(task_id, status="completed", result=result)

    @staticmethod
    async def find(
        session: AsyncSession, project_id: str, kind: str, task_id: str
    ) -> BackgroundTask | None:
        return await session.scalar(
            select(BackgroundTask).where(
                BackgroundTask.id == task_id,
                BackgroundTask.project_id == project_id,
                BackgroundTask.kind == kind,
            )
        )

    async def wait(self) -> None:
        """Until every task of this process has ended (tests)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def close(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
