"""Periodic background jobs in the serving process (sweepers, purges).

Each job must be safe to run on every replica at once: they settle rows with conditional
statements, so two sweepers never release the same hold twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("tollhouse.jobs")


class PeriodicJobs:
    def __init__(self) -> None:
        self._jobs: list[tuple[str, float, Callable[[], Awaitable[Any]]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, seconds: float, name: str, job: Callable[[], Awaitable[Any]]) -> None:
        self._jobs.append((name, seconds, job))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(name, seconds, job), name=f"job:{name}")
            for name, seconds, job in self._jobs
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, name: str, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = await job()
            except Exception:
                log.exception("job_failed", job=name)
            else:
                if result:
                    log.info("job_done", job=name, result=result)
