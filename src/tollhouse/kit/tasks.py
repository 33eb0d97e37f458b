"""One-off background tasks with a status anyone can read (re-grounding an entity, …).

`TaskRunner.submit` records a `queued` row in the caller's transaction; once that commits,
`start` enqueues a job on the job queue (kit/queue.py) named after the task's kind, its
payload the task id and what the kind's registered work needs (JSON: a worker rebuilds the
work from it). Whoever takes the job marks the row `running`, then `completed` with the
work's result or `failed` with its error. With `JOB_QUEUE=memory` that is a task of this
process, as before; with `redis` any worker, never a `--role gateway` replica. The row is
the task's only state, so any replica answers its status.

A job whose worker died is run again while attempts remain (the work must be safe to
repeat); a row still `queued` or `running` once every attempt's time is up (its jobs
gone, or never enqueued) is failed by `sweep_abandoned`, a periodic job.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import JSON, Index, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.db.engine import Database
from tollhouse.db.types import UTCDateTime
from tollhouse.kit.clock import utcnow
from tollhouse.kit.queue import JobHandle, JobLost, JobQueue

log = structlog.get_logger("tollhouse.tasks")

# A kind's work: its JSON payload in, the task's result out.
Work = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
INTERRUPTED = "The task was interrupted: the server shut down"
ABANDONED = "The task was lost: its worker stopped before it finished"
UNFINISHED = ("queued", "running")
# How much longer than the work's own timeout its job may take (marking the row).
JOB_MARGIN_SECONDS = 30.0


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


@dataclass(frozen=True, slots=True)
class _Kind:
    work: Work
    timeout_seconds: float
    attempts: int


def job_name(kind: str) -> str:
    return f"task:{kind}"


class TaskRunner:
    def __init__(self, database: Database, queue: JobQueue, *, heartbeat_seconds: float) -> None:
        self._database = database
        self._queue = queue
        self._heartbeat = heartbeat_seconds
        self._kinds: dict[str, _Kind] = {}
        # Requests of this process waiting on their task's job (tests wait for them).
        self._waiting: set[asyncio.Task[None]] = set()

    def register(self, kind: str, work: Work, *, timeout_seconds: float, attempts: int) -> None:
        """Tasks of `kind` run `work` (before the queue starts, in every process)."""
        spec = _Kind(work, timeout_seconds, attempts)
        self._kinds[kind] = spec

        async def handler(payload: dict[str, Any]) -> None:
            await self._run(payload["task_id"], spec, payload["work"])

        self._queue.register(
            job_name(kind),
            handler,
            timeout_seconds=timeout_seconds + JOB_MARGIN_SECONDS,
            attempts=attempts,
        )

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

    async def start(self, task: BackgroundTask, work: dict[str, Any]) -> None:
        """Enqueue the committed task; `work` is its kind's JSON payload. A queue that refuses
        it (Redis away) leaves the row queued for `sweep_abandoned` to fail, not the request."""
        spec = self._kinds[task.kind]
        try:
            handle = await self._queue.enqueue(
                job_name(task.kind), {"task_id": task.id, "work": work}, key=f"task:{task.id}"
            )
        except Exception:
            log.exception("task_enqueue_failed", task_id=task.id, kind=task.kind)
            return
        limit = spec.attempts * (spec.timeout_seconds + JOB_MARGIN_SECONDS + 3 * self._heartbeat)
        waiting = asyncio.create_task(self._ended(handle, limit), name=f"task:{task.id}")
        self._waiting.add(waiting)
        waiting.add_done_callback(self._waiting.discard)

    @staticmethod
    async def _ended(handle: JobHandle, limit: float) -> None:
        with contextlib.suppress(JobLost):  # the row says how it ended
            await handle.result(limit)

    async def _claim(self, task_id: str) -> bool:
        """Mark the task running unless an earlier attempt already ended it."""
        async with self._database.session() as session:
            claimed = await session.execute(
                update(BackgroundTask)
                .where(BackgroundTask.id == task_id, BackgroundTask.status.in_(UNFINISHED))
                .values(status="running", updated_at=utcnow())
            )
            await session.commit()
        return bool(getattr(claimed, "rowcount", 0))

    async def _set(self, task_id: str, **fields: Any) -> None:
        async with self._database.session() as session:
            task = await session.get(BackgroundTask, task_id)
            assert task is not None
            for name, value in fields.items():
                setattr(task, name, value)
            task.updated_at = utcnow()
            await session.commit()

    async def _run(self, task_id: str, spec: _Kind, work: dict[str, Any]) -> None:
        if not await self._claim(task_id):
            return
        try:
            async with asyncio.timeout(spec.timeout_seconds):
                result = await spec.work(work)
        except asyncio.CancelledError:
            await asyncio.shield(self._set(task_id, status="failed", error=INTERRUPTED))
            raise
        except TimeoutError:
            error = f"The task timed out after {spec.timeout_seconds:g} seconds"
            await self._set(task_id, status="failed", error=error)
        except Exception as exc:
            log.warning("task_failed", task_id=task_id, error=str(exc))
            await self._set(task_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            await self._set(task_id, status="completed", result=result)

    async def sweep_abandoned(self) -> int:
        """Fail tasks still unfinished after every attempt's time (their worker died, or the
        job was never enqueued): the periodic job that keeps a status from hanging."""
        now = utcnow()
        failed = 0
        async with self._database.session() as session:
            for kind, spec in self._kinds.items():
                per_attempt = spec.timeout_seconds + JOB_MARGIN_SECONDS + 3 * self._heartbeat
                cutoff = now - timedelta(seconds=spec.attempts * per_attempt)
                swept = await session.execute(
                    update(BackgroundTask)
                    .where(
                        BackgroundTask.kind == kind,
                        BackgroundTask.status.in_(UNFINISHED),
                        BackgroundTask.updated_at < cutoff,
                    )
                    .values(status="failed", error=ABANDONED, updated_at=now)
                )
                failed += int(getattr(swept, "rowcount", 0))
            await session.commit()
        return failed

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
        """Until every task this process started has ended, wherever it ran (tests)."""
        while self._waiting:
            await asyncio.gather(*self._waiting, return_exceptions=True)

    async def close(self) -> None:
        for waiting in self._waiting:
            waiting.cancel()
        await asyncio.gather(*self._waiting, return_exceptions=True)
