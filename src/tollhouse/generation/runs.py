"""Running generations: one job per timepoint on the job queue, whoever asked for it.

Sync, async and streamed requests all enqueue the same job; they differ only in how they
wait (the sync route awaits its outcome, the stream route follows its events on the bus,
the async route returns at once). The request takes the hold; the job owns the money from
then on: it captures the hold when the timepoint completes and releases it on every other
ending — a failed run, a timeout, an exception, a shutdown. A client that goes away
changes nothing: the run completes, is charged, and can be fetched.

With the Redis queue the job runs on whichever worker takes it. A worker killed mid-run
stops heart-beating; another worker takes the job back and runs it again
(`GENERATION_JOB_ATTEMPTS`), and a run that finds its row already settled only settles the
hold the way the row says. Settling is one conditional UPDATE (`status = 'held'`), so a
hold is captured or released at most once whatever runs twice; a job that never ends
leaves its hold to expire and the sweepers to refund it and fail the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from typing import Any

import structlog

from tollhouse.config import Settings
from tollhouse.db.engine import Database
from tollhouse.generation import planning, provenance, repository, service, tdf, views
from tollhouse.generation.callbacks import CALLBACK_JOB, CallbackSender
from tollhouse.generation.context import RunLLM, SceneContext, SceneRequest
from tollhouse.generation.events import EventBus, GenerationEvent, RedisBus
from tollhouse.generation.llm.base import Sampling
from tollhouse.generation.llm.router import LLMRouter, NoLLMProvider
from tollhouse.generation.model_registry import ModelRegistry
from tollhouse.generation.models import Timepoint
from tollhouse.generation.pipeline import RunResult, StepOutcome
from tollhouse.generation.presets import Preset, load_presets
from tollhouse.generation.scene import SceneRecord, scene_graph, scene_record
from tollhouse.generation.schemas import GenerateRequest
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import hmac_sha256_hex
from tollhouse.kit.queue import JobHandle, JobLost, JobQueue
from tollhouse.kit.storage import Storage
from tollhouse.kit.tasks import TaskRunner
from tollhouse.ledger.charging import Charge

log = structlog.get_logger("tollhouse.generation")

TIMED_OUT = "timed_out"
STOPPED = "Generation stopped: the server shut down"
GENERATION_JOB = "generation"
# How much longer than the run's own timeout its job may take (saving, the image, settling).
JOB_MARGIN_SECONDS = 120.0


@dataclass(slots=True)
class Outcome:
    """How a run ended, for whoever waits on it (the sync route)."""

    timepoint_id: uuid.UUID
    status: str
    error: str | None = None
    # "timed_out" or "exception" when the run did not end on its own.
    interrupted: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "timepoint_id": str(self.timepoint_id)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(**{**data, "timepoint_id": uuid.UUID(data["timepoint_id"])})


@dataclass(slots=True)
class Job:
    timepoint_id: uuid.UUID
    request: SceneRequest
    charge: Charge
    preset_label: str
    callback_url: str | None = None
    request_context: dict[str, Any] | None = None
    # Row fields decided before the run, kept over what the scene says (a jump's target date).
    fixed_fields: dict[str, Any] = field(default_factory=dict)
    write_blob: bool = False
    started: float = field(default_factory=time.perf_counter)


def topic(timepoint_id: uuid.UUID) -> str:
    return str(timepoint_id)


def job_payload(job: Job) -> dict[str, Any]:
    """What a worker needs to run `job` (JSON: it travels through the queue)."""
    request = job.request
    plain = {f.name: getattr(request, f.name) for f in fields(request)}
    return {
        "timepoint_id": str(job.timepoint_id),
        "request": {
            **plain,
            "preset": request.preset.model_dump(mode="json"),
            "sampling": asdict(request.sampling),
            "entity_ids": list(request.entity_ids),
        },
        "charge": {
            "amount": job.charge.amount,
            "hold_id": str(job.charge.hold_id) if job.charge.hold_id else None,
        },
        "preset_label": job.preset_label,
        "callback_url": job.callback_url,
        "request_context": job.request_context,
        "fixed_fields": job.fixed_fields,
        "write_blob": job.write_blob,
    }


def job_from_payload(payload: dict[str, Any], database: Database) -> Job:
    """The job `job_payload` described, its hold settled through this process's database."""
    request = dict(payload["request"])
    sampling = dict(request.pop("sampling"))
    sampling["stop"] = tuple(sampling.get("stop") or ())
    charge = payload["charge"]
    hold_id = charge["hold_id"]
    return Job(
        timepoint_id=uuid.UUID(payload["timepoint_id"]),
        request=SceneRequest(
            **{
                **request,
                "preset": Preset.model_validate(request["preset"]),
                "sampling": Sampling(**sampling),
                "entity_ids": tuple(request["entity_ids"]),
            }
        ),
        charge=Charge(
            amount=charge["amount"],
            hold_id=uuid.UUID(hold_id) if hold_id else None,
            database=database if hold_id else None,
        ),
        preset_label=payload["preset_label"],
        callback_url=payload["callback_url"],
        request_context=payload["request_context"],
        fixed_fields=payload["fixed_fields"],
        write_blob=payload["write_blob"],
    )


class Generations:
    """The generation domain's process-wide parts (app.state.generation)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        router: LLMRouter,
        bus: EventBus,
        storage: Storage,
        callbacks: CallbackSender,
        queue: JobQueue,
    ) -> None:
        self.settings = settings
        self.database = database
        self.router = router
        self.bus = bus
        self.storage = storage
        self.callbacks = callbacks
        self.queue = queue
        queue.register(
            GENERATION_JOB,
            self.run_job,
            timeout_seconds=settings.generation_timeout_seconds + JOB_MARGIN_SECONDS,
            attempts=settings.generation_job_attempts,
        )
        # A delivery whose worker died is sent again by another (as often as a run is).
        queue.register(
            CALLBACK_JOB,
            self.deliver_callback,
            timeout_seconds=callbacks.budget_seconds(),
            attempts=settings.generation_job_attempts,
        )
        self.presets: dict[str, Preset] = load_presets(settings.generation_presets)
        self.links = views.Links(
            settings.share_url_base,
            settings.public_base_url,
            signing_key=hmac_sha256_hex(
                settings.secret("tollhouse_secret_pepper") or "", "timepoint-image-urls"
            ),
            image_url_ttl=settings.image_url_ttl_seconds,
        )
        self.models = ModelRegistry(
            router,
            self.presets,
            (settings.permissive_text_model, settings.llm_model),
            (settings.permissive_image_model, settings.llm_image_model),
            cache_seconds=settings.models_cache_seconds,
        )
        # One-off background work (re-grounding): jobs on the same queue.
        self.tasks = TaskRunner(database, queue, heartbeat_seconds=settings.job_heartbeat_seconds)
        # Runs executing in this process, and requests of this process waiting on a run.
        self._tasks: dict[uuid.UUID, asyncio.Task[Any]] = {}
        self._waiters: dict[uuid.UUID, asyncio.Task[Outcome]] = {}
        # Set while draining with a shared bus: streams end, clients follow from elsewhere.
        self.handed_off = asyncio.Event()

    @property
    def hold_ttl(self) -> timedelta:
        """Longer than every attempt of a run together (a retry starts once the dead worker's
        heartbeat has lapsed), so the sweeper only ever releases holds nobody will settle."""
        settings = self.settings
        attempt = settings.generation_timeout_seconds + JOB_MARGIN_SECONDS
        retry_after = 3 * settings.job_heartbeat_seconds
        return timedelta(seconds=settings.generation_job_attempts * (attempt + retry_after))

    def require_provider(self) -> None:
        if not self.router.configured:
            raise NoLLMProvider()

    def plan(self, body: GenerateRequest) -> SceneRequest:
        return planning.plan(body, self.presets, self.settings)

    async def start(self, job: Job) -> asyncio.Task[Outcome]:
        """Enqueue the run (its row and hold committed); the task ends with its outcome."""
        handle = await self.queue.enqueue(
            GENERATION_JOB, job_payload(job), key=f"generation:{job.timepoint_id}"
        )
        waiter = asyncio.create_task(
            self._outcome(handle, job.timepoint_id), name=f"outcome:{job.timepoint_id}"
        )
        self._waiters[job.timepoint_id] = waiter
        waiter.add_done_callback(lambda _: self._waiters.pop(job.timepoint_id, None))
        return waiter

    async def _outcome(self, handle: JobHandle, timepoint_id: uuid.UUID) -> Outcome:
        limit = self.settings.generation_timeout_seconds + JOB_MARGIN_SECONDS
        try:
            return Outcome.from_json(await handle.result(limit))
        except JobLost as exc:  # the job ended without an outcome: the row says how
            async with self.database.session() as session:
                row = await session.get(Timepoint, timepoint_id)
            if row is not None and row.status != "processing":
                return Outcome(timepoint_id, row.status, row.error_message, "exception")
            return Outcome(timepoint_id, "failed", f"The generation was lost: {exc}", "exception")

    def running(self, timepoint_id: uuid.UUID) -> bool:
        return timepoint_id in self._tasks

    async def run_job(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The queue's handler: run the generation once, or, when an earlier attempt already
        finished its row (its worker died before the queue heard), settle the hold as the
        row says."""
        job = job_from_payload(payload, self.database)
        task = asyncio.current_task()
        if task is not None:
            self._tasks[job.timepoint_id] = task
        try:
            async with self.database.session() as session:
                row = await session.get(Timepoint, job.timepoint_id)
                status, error = (row.status, row.error_message) if row else ("failed", None)
            if status != "processing":
                await (job.charge.capture() if status == "completed" else job.charge.release())
                return Outcome(job.timepoint_id, status, error).to_json()
            return (await self._run(job)).to_json()
        finally:
            self._tasks.pop(job.timepoint_id, None)

    async def _publish(self, job: Job, event: GenerationEvent) -> None:
        try:
            await self.bus.publish(topic(job.timepoint_id), event)
        except Exception:  # followers miss a frame; the run and its row are unaffected
            log.exception("event_publish_failed", timepoint_id=str(job.timepoint_id))

    async def _run(self, job: Job) -> Outcome:
        request = job.request
        await self._publish(
            job,
            GenerationEvent(
                "start",
                "initialization",
                {
                    "query": request.query,
                    "generate_image": request.generate_image,
                    "preset": job.preset_label,
                },
                0,
                None,
            ),
        )
        context = SceneContext(request, RunLLM(self.router, request))

        reached = 0

        async def on_step(outcome: StepOutcome) -> None:
            # Parallel steps finish in any order (camera before characters): clients draw
            # progress bars, so progress only ever grows.
            nonlocal reached
            reached = max(reached, outcome.progress)
            if outcome.status == "completed":
                data = {"latency_ms": outcome.latency_ms, "model_used": outcome.stats.model}
                event = GenerationEvent("step_complete", outcome.name, data, reached, None)
            else:
                event = GenerationEvent("step_error", outcome.name, None, reached, outcome.error)
            await self._publish(job, event)

        result: RunResult | None = None
        interrupted: str | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.generation_timeout_seconds):
                result = await scene_graph().run(context, on_step)
            error = result.error
        except TimeoutError:
            interrupted = TIMED_OUT
            error = (
                f"Generation timed out after {self.settings.generation_timeout_seconds:g} seconds"
            )
        except asyncio.CancelledError:
            await self._interrupted(job, STOPPED)
            raise
        except Exception as exc:
            log.exception("generation_crashed", timepoint_id=str(job.timepoint_id))
            interrupted = "exception"
            error = f"{type(exc).__name__}: {exc}"
        return await self._finish(job, context, result, error, interrupted)

    async def _finish(
        self,
        job: Job,
        context: SceneContext,
        result: RunResult | None,
        error: str | None,
        interrupted: str | None,
    ) -> Outcome:
        status = "failed" if error is not None else "completed"
        elapsed_ms = round((time.perf_counter() - job.started) * 1000)
        try:
            record = (
                scene_record(context.results, entity_ids=job.request.entity_ids)
                if status == "completed"
                else None
            )
            image_key = await self._store_image(job, record)
            async with self.database.session() as session:
                timepoint = await service.save_finished(
                    session,
                    job.timepoint_id,
                    self._finished(job, status, error, record, image_key, elapsed_ms, result),
                )
                if job.write_blob and status == "completed":
                    await tdf.write_blob(self.storage, timepoint)
                done = views.done_event(timepoint)
                await session.commit()
        except Exception as exc:
            log.exception("generation_save_failed", timepoint_id=str(job.timepoint_id))
            await self._mark_failed(job, f"The timepoint could not be saved: {exc}")
            await job.charge.release()
            await self._publish(
                job,
                GenerationEvent(
                    "error",
                    "database_save",
                    {
                        "timepoint_id": str(job.timepoint_id),
                        "status": "save_failed",
                        "total_latency_ms": elapsed_ms,
                        "saved": False,
                    },
                    0,
                    f"{type(exc).__name__}: {exc}",
                ),
            )
            await self._callback(job, None, f"{type(exc).__name__}: {exc}")
            return Outcome(job.timepoint_id, "failed", str(exc), "exception")
        await (job.charge.capture() if status == "completed" else job.charge.release())
        await self._publish(job, done)
        await self._callback(job, status, error)
        return Outcome(job.timepoint_id, status, error, interrupted)

    def _finished(
        self,
        job: Job,
        status: str,
        error: str | None,
        record: SceneRecord | None,
        image_key: str | None,
        elapsed_ms: int,
        result: RunResult | None,
    ) -> service.Finished:
        payload: dict[str, Any] | None = None
        fields: dict[str, Any] = {}
        ran = provenance.of_run(result.outcomes.values() if result else ())
        image_model = ran.image_model if image_key else None
        if record is not None:
            fields = {
                "year": record.year,
                "month": record.month,
                "day": record.day,
                "season": record.season,
                "time_of_day": record.time_of_day,
                "era": record.era,
                "location": record.location,
            }
            fields |= job.fixed_fields
            payload = {
                "query": job.request.query,
                **fields,
                **record.payload,
                "text_model_used": ran.text_model,
                "image_model_used": image_model,
                "model_provider": ran.provider,
                "model_permissiveness": provenance.permissiveness(ran.text_model, image_model),
            }
        return service.Finished(
            status=status,
            error=error,
            fields=fields,
            payload=payload,
            text_model=ran.text_model,
            image_model=image_model,
            image_key=image_key,
            image_content_type=record.image.content_type if record and record.image else None,
            generation_time_ms=elapsed_ms,
            outcomes=list(result.outcomes.values()) if result else [],
        )

    async def _store_image(self, job: Job, record: SceneRecord | None) -> str | None:
        if record is None or record.image is None:
            return None
        extension = record.image.content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        key = f"timepoints/{job.timepoint_id}/image.{extension}"
        await self.storage.put(key, record.image.data, record.image.content_type)
        return key

    async def _interrupted(self, job: Job, error: str) -> None:
        """The task was cancelled (shutdown): fail the row, refund, tell followers."""
        await self._mark_failed(job, error)
        with contextlib.suppress(Exception):
            await job.charge.release()
        await self._publish(job, GenerationEvent("error", "shutdown", None, 0, error))

    async def _mark_failed(self, job: Job, error: str) -> None:
        """Best effort: the row says failed (else the abandoned-run sweeper will)."""
        with contextlib.suppress(Exception):
            async with self.database.session() as session:
                timepoint = await session.get(Timepoint, job.timepoint_id)
                if timepoint is not None and timepoint.status == "processing":
                    timepoint.status = "failed"
                    timepoint.error_message = error
                    timepoint.updated_at = utcnow()
                    await session.commit()

    async def _callback(self, job: Job, status: str | None, error: str | None) -> None:
        if job.callback_url is None:
            return
        if status == "completed" or status == "failed":
            async with self.database.session() as session:
                timepoint = await session.get(Timepoint, job.timepoint_id)
                assert timepoint is not None
                body = views.response(
                    timepoint, self.links, full=True, request_context=job.request_context
                )
            payload: dict[str, Any] = body.model_dump(mode="json")
        else:
            payload = {
                "id": str(job.timepoint_id),
                "status": "failed",
                "error": error,
                "request_context": job.request_context,
            }
        await self.callbacks.enqueue(
            self.queue, job.callback_url, payload, key=f"callback:{job.timepoint_id}"
        )

    async def deliver_callback(self, job: dict[str, Any]) -> bool:
        """The callback job's handler, through this process's sender."""
        return await self.callbacks.deliver(job)

    async def wait(self, timepoint_id: uuid.UUID) -> None:
        """Until a run this process started or runs has ended (tests and shutdown)."""
        task = self._waiters.get(timepoint_id) or self._tasks.get(timepoint_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    async def sweep_abandoned(self) -> int:
        """Rows left processing by a process that died: failed (their holds expire alone)."""
        cutoff = utcnow() - self.hold_ttl
        async with self.database.session() as session:
            count = await repository.fail_abandoned(
                session, cutoff, utcnow(), "Generation was interrupted before it finished"
            )
            await session.commit()
        return count

    async def purge_images(self, batch: int = 100) -> int:
        """Delete the images of removed timepoints from storage (see models.ImageDeletion)."""
        async with self.database.session() as session:
            queued = await repository.image_deletions(session, batch)
            for deletion in queued:
                await self.storage.delete(deletion.image_key)
            await repository.forget_image_deletions(session, [d.id for d in queued])
        return len(queued)

    def hand_off(self) -> None:
        """Draining: with a shared (Redis) bus, end this process's streams so clients follow
        the same runs from another replica; runs go on here and publish to the bus. With an
        in-process bus, streams stay open until their runs end."""
        if isinstance(self.bus, RedisBus):
            self.handed_off.set()

    async def finish_runs(self) -> None:
        """Draining: let running generations end (the caller bounds the wait; `close`
        cancels the rest, and a cancelled run refunds itself)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def close(self) -> None:
        """Shutdown: stop every run (each refunds itself), then the clients."""
        tasks = [*self._tasks.values(), *self._waiters.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.tasks.close()
        await self.callbacks.close()
        await self.router.close()
        await self.bus.close()
        await self.storage.close()
