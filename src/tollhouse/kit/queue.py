"""Background work behind one port: `enqueue(name, payload)` and periodic jobs.

Two backends, chosen by `JOB_QUEUE`:

- `memory` (the embedded default): a job is a task of this process and a periodic job a
  loop in it, exactly as one process always ran them. Nothing survives the process.
- `redis`: SAQ on `REDIS_URL`. A job is a record in Redis that any worker (`tollhouse
  worker`, or `serve --role all`) takes; the worker touches it every third of
  `JOB_HEARTBEAT_SECONDS`, and every worker's sweep (one at a time, under SAQ's lock) takes
  a job whose heartbeat stopped (its worker was killed) back: retried while attempts remain,
  else aborted. A periodic job runs once per period across the cluster: for period
  `floor(now / seconds)` the first worker to `SET … NX` its key enqueues it.

Handlers must be safe to run again (a retry after a dead worker reruns one that may have
got far): they settle rows and money with conditional statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from saq import Queue as SaqBackend
from saq import Worker
from saq.job import Job as SaqJob
from saq.job import Status
from saq.queue.redis import RedisQueue

from tollhouse.kit.jobs import PeriodicJobs

log = structlog.get_logger("tollhouse.queue")

Payload = dict[str, Any]
Handler = Callable[[Payload], Awaitable[Any]]
Periodic = Callable[[], Awaitable[Any]]


class JobLost(Exception):
    """The job ended without a result: failed, aborted, or gone from the queue."""


@dataclass(frozen=True, slots=True)
class Kind:
    handler: Handler
    timeout_seconds: float
    attempts: int


class JobHandle(ABC):
    @abstractmethod
    async def result(self, timeout_seconds: float) -> Any:
        """The handler's return value once the job has ended (JobLost when it failed or
        never ended in time)."""


class JobQueue(ABC):
    """The port. Register handlers and periodic jobs, then `start`; `enqueue` from anywhere."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}
        self._periodic: dict[str, tuple[float, Periodic]] = {}

    def register(
        self, name: str, handler: Handler, *, timeout_seconds: float, attempts: int = 1
    ) -> None:
        """`attempts` > 1: a job whose worker died is run again (only a queue that outlives
        processes can)."""
        self._kinds[name] = Kind(handler, timeout_seconds, attempts)

    def every(self, seconds: float, name: str, job: Periodic) -> None:
        """Run `job` once every `seconds`, once per period wherever the queue's workers are."""
        self._periodic[name] = (seconds, job)

    @property
    def periodic_names(self) -> list[str]:
        return list(self._periodic)

    @property
    @abstractmethod
    def shared(self) -> bool:
        """Whether jobs enqueued here can run in another process."""

    @abstractmethod
    async def enqueue(self, name: str, payload: Payload, *, key: str | None = None) -> JobHandle:
        """Queue one job; `key` (unique among unfinished jobs) names it."""

    @abstractmethod
    async def start(self, *, run_jobs: bool) -> None:
        """Connect; with `run_jobs`, also take jobs and run periodic ones in this process."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop taking jobs; jobs running here are cancelled after the backend's grace."""


class _LocalHandle(JobHandle):
    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task

    async def result(self, timeout_seconds: float) -> Any:
        try:
            async with asyncio.timeout(timeout_seconds):
                return await asyncio.shield(self.task)
        except TimeoutError as exc:
            raise JobLost("the job did not end in time") from exc
        except asyncio.CancelledError:
            if self.task.cancelled():
                raise JobLost("the job was cancelled") from None
            raise
        except Exception as exc:
            raise JobLost(f"{type(exc).__name__}: {exc}") from exc


class InProcessQueue(JobQueue):
    """Jobs are tasks of this process; periodic jobs loops of it (the embedded default)."""

    def __init__(self) -> None:
        super().__init__()
        self._running: set[asyncio.Task[Any]] = set()
        self._loops = PeriodicJobs()

    @property
    def shared(self) -> bool:
        return False

    async def enqueue(self, name: str, payload: Payload, *, key: str | None = None) -> JobHandle:
        kind = self._kinds[name]
        task = asyncio.create_task(self._run(name, kind, payload), name=f"job:{name}:{key}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return _LocalHandle(task)

    @staticmethod
    async def _run(name: str, kind: Kind, payload: Payload) -> Any:
        try:
            async with asyncio.timeout(kind.timeout_seconds):
                return await kind.handler(payload)
        except Exception:
            log.exception("job_failed", job=name)
            raise

    async def start(self, *, run_jobs: bool) -> None:
        if not run_jobs:
            return
        for name, (seconds, job) in self._periodic.items():
            self._loops.every(seconds, name, job)
        self._loops.start()

    async def stop(self) -> None:
        await self._loops.stop()
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


class _SaqHandle(JobHandle):
    def __init__(self, job: SaqJob) -> None:
        self._job = job

    async def result(self, timeout_seconds: float) -> Any:
        try:
            await self._job.refresh(until_complete=timeout_seconds)
        except (TimeoutError, RuntimeError) as exc:  # RuntimeError: the record is gone
            raise JobLost(str(exc) or type(exc).__name__) from exc
        if self._job.status != Status.COMPLETE:
            raise JobLost(f"{self._job.status}: {self._job.error or 'no result'}")
        return self._job.result


class _RedisBackend(RedisQueue):
    """SAQ's Redis queue, its sweep made safe for a job caught between a worker's dequeue
    (BLMOVE to the active list) and that worker marking it active: SAQ 0.26's sweep takes
    such a job for a stuck one. Here it is read again a moment later first, as SAQ's main
    branch now does."""

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        if not self._cleanup_script:
            self._cleanup_script = self.redis.register_script(SWEEP_LOCK)
        ids = await self._cleanup_script(keys=[self._sweep, self._active], args=[lock])
        swept: list[str] = []
        for raw_id in ids or ():
            job_id = raw_id.decode()
            job = await self._get_job_by_id(job_id)
            if job is not None and job.status == Status.QUEUED:
                await asyncio.sleep(0.1)  # just dequeued: its worker is marking it active
                job = await self._get_job_by_id(job_id)
            if job is None:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.lrem(self._active, 0, job_id)
                    pipe.zrem(self._incomplete, job_id)
                    await pipe.execute()
                swept.append(job_id)
            elif job.status != Status.ACTIVE or job.stuck:
                log.info("job_swept", job=job.key, attempts=job.attempts)
                swept.append(job_id)
                await self.abort(job, error=self.swept_error_message)
                # A live worker gets `abort` seconds to give the job up; a dead one never does
                # (RuntimeError: the aborted record expired meanwhile).
                with contextlib.suppress(TimeoutError, RuntimeError):
                    await job.refresh(abort)
                if job.retryable:
                    await self.retry(job, error=self.swept_error_message)
                else:
                    await self.finish(job, Status.ABORTED, error=self.swept_error_message)
        return swept


# One sweeper at a time across workers (SETEX lock), reading the active list's job ids.
SWEEP_LOCK = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SETEX', KEYS[1], ARGV[1], 1)
    return redis.call('LRANGE', KEYS[2], 0, -1)
end
return {}
"""


class _Worker(Worker):  # type: ignore[type-arg]
    # The process's own signal handling (uvicorn's, the worker command's) decides when to stop.
    SIGNALS: list[Any] = []  # noqa: RUF012 - overrides the class attribute


class SaqQueue(JobQueue):
    """Jobs on SAQ's Redis queue, taken by any worker; see the module's docstring."""

    def __init__(
        self,
        redis_url: str,
        name: str,
        *,
        heartbeat_seconds: float,
        concurrency: int = 10,
        shutdown_grace_seconds: float = 20.0,
        clock: Callable[[], float] = time.time,
        result_ttl_seconds: int = 600,
        worker_id: str | None = None,
    ) -> None:
        super().__init__()
        self._backend = _RedisBackend(Redis.from_url(redis_url), name=name)
        self._name = name
        self._heartbeat = max(1, math.ceil(heartbeat_seconds))
        self._concurrency = concurrency
        self._grace = shutdown_grace_seconds
        self._clock = clock
        self._result_ttl = result_ttl_seconds
        # In every job record it runs (`worker_id`): which process to look at, or to kill.
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._worker: _Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._claimed: dict[str, int] = {}

    @property
    def backend(self) -> SaqBackend:
        return self._backend

    @property
    def shared(self) -> bool:
        return True

    async def enqueue(self, name: str, payload: Payload, *, key: str | None = None) -> JobHandle:
        kind = self._kinds[name]
        options: dict[str, Any] = {
            "timeout": math.ceil(kind.timeout_seconds),
            "heartbeat": self._heartbeat,
            "retries": kind.attempts,
            "ttl": self._result_ttl,
        }
        if key is not None:
            options["key"] = key
        job = await self._backend.enqueue(name, payload=payload, **options)
        if job is None:
            raise JobLost(f"a job {key!r} is already queued")
        return _SaqHandle(job)

    def _function(self, name: str, kind: Kind) -> tuple[str, Callable[..., Awaitable[Any]]]:
        heartbeat = self._heartbeat

        async def run(context: dict[str, Any], *, payload: Payload) -> Any:
            job: SaqJob = context["job"]

            async def beat() -> None:
                while True:
                    await asyncio.sleep(heartbeat / 3)
                    with contextlib.suppress(Exception):  # a missed beat: the next one counts
                        await job.update()

            beating = asyncio.create_task(beat())
            try:
                return await kind.handler(payload)
            finally:
                beating.cancel()

        return name, run

    async def start(self, *, run_jobs: bool) -> None:
        await self._backend.connect()
        if not run_jobs:
            return
        functions = [self._function(name, kind) for name, kind in self._kinds.items()]
        functions += [
            self._function(name, Kind(self._periodic_handler(job), max(60.0, seconds), 1))
            for name, (seconds, job) in self._periodic.items()
        ]
        self._worker = _Worker(
            self._backend,
            functions,
            id=self.worker_id,
            concurrency=self._concurrency,
            timers={"sweep": self._heartbeat, "schedule": 1, "abort": 1, "worker_info": 10},
            # Blocking reads end every second, so a stopping worker takes no new job after.
            dequeue_timeout=1,
            shutdown_grace_period_s=math.ceil(self._grace),
        )
        self._worker_task = asyncio.create_task(self._worker.start(), name="queue:worker")
        if self._periodic:
            self._scheduler = asyncio.create_task(self._schedule_forever(), name="queue:periodic")

    @staticmethod
    def _periodic_handler(job: Periodic) -> Handler:
        async def handler(_payload: Payload) -> Any:
            result = await job()
            return result if isinstance(result, int | float | str | bool | None) else None

        return handler

    async def tick(self) -> list[str]:
        """Enqueue each periodic job whose period began since this worker last looked and
        that no other worker has claimed; the names enqueued here."""
        now = self._clock()
        enqueued: list[str] = []
        for name, (seconds, _job) in self._periodic.items():
            period = int(now // seconds)
            if self._claimed.get(name) == period:
                continue
            self._claimed[name] = period
            claim = f"saq:{self._name}:periodic:{name}:{period}"
            won = await self._backend.redis.set(claim, b"1", nx=True, ex=math.ceil(seconds) + 60)
            if won:
                await self._backend.enqueue(
                    name,
                    payload={},
                    key=f"periodic:{name}:{period}",
                    timeout=math.ceil(max(60.0, seconds)),
                    ttl=60,
                )
                enqueued.append(name)
        return enqueued

    async def _schedule_forever(self) -> None:
        shortest = min(seconds for seconds, _ in self._periodic.values())
        while True:
            try:
                await self.tick()
            except Exception:  # Redis away for a moment: try again next tick
                log.exception("periodic_schedule_failed")
            await asyncio.sleep(min(1.0, shortest / 2))

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        if self._worker is not None and self._worker_task is not None:
            # Upkeep loops sleep for up to their timers: end them now. Then the worker takes
            # no new job, waits for running ones up to the grace, and cancels the rest.
            for task in list(self._worker.tasks):
                if task.get_name() != "process":
                    task.cancel()
            self._worker.event.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        await self._backend.disconnect()


def job_queue_from_settings(
    kind: str,
    redis_url: str | None,
    name: str,
    *,
    heartbeat_seconds: float,
    shutdown_grace_seconds: float,
) -> JobQueue:
    """`memory` (this process) or `redis` (SAQ on REDIS_URL, shared by the cluster)."""
    if kind == "redis":
        if not redis_url:
            raise ValueError("JOB_QUEUE=redis needs REDIS_URL.")
        return SaqQueue(
            redis_url,
            name,
            heartbeat_seconds=heartbeat_seconds,
            shutdown_grace_seconds=shutdown_grace_seconds,
        )
    return InProcessQueue()
