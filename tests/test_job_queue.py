"""The job-queue port (kit/queue.py): the in-process backend, and SAQ on the local Redis —
a job whose worker is killed runs again elsewhere, a periodic job runs once per period
across workers, and generation runs enqueued by a gateway run on a worker, charged on
completion and refunded on failure."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from callback_receiver import HELD, Receiver
from callback_worker import callback_queue
from cli_support import tollhouse
from clockchain_peer import KEY as CLOCKCHAIN_KEY
from clockchain_peer import ClockchainPeer
from conftest import make_settings
from gen_support import GENERATE, REJECTED
from llm_peer import LLMPeer
from queue_worker import attempt_handler
from scene_script import QUERY, script_scene
from support import SERVICE, as_user, resolve, serving
from tollhouse import worker
from tollhouse.app import create_app
from tollhouse.config import ConfigError, Settings
from tollhouse.db.engine import Database
from tollhouse.kit.clock import utcnow
from tollhouse.kit.queue import InProcessQueue, JobLost, SaqQueue
from tollhouse.kit.tasks import ABANDONED, JOB_MARGIN_SECONDS, BackgroundTask, TaskRunner

pytestmark = pytest.mark.anyio

REDIS_URL_ENV = "TOLLHOUSE_TEST_REDIS_URL"
WITHIN_SECONDS = 30.0
POLL_SECONDS = 0.05


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(f"the Redis job queue skipped: {REDIS_URL_ENV} is not set")
    return url


@pytest.fixture
async def queue_name(redis_url: str) -> AsyncIterator[str]:
    """A queue of this test's own (other runs share the Redis server); its keys dropped."""
    name = f"tollhouse-test-{uuid.uuid4().hex}"
    yield name
    async with Redis.from_url(redis_url) as redis:
        keys = [key async for key in redis.scan_iter(f"saq:*{name}*")]
        if keys:
            await redis.delete(*keys)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """A bounded poll."""
    for _ in range(int(WITHIN_SECONDS / POLL_SECONDS)):
        if await condition():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"not within {WITHIN_SECONDS:g} s: {what}")


# --- in-process ----------------------------------------------------------------------------


async def test_the_in_process_queue_runs_jobs_here_and_reports_failures() -> None:
    queue = InProcessQueue()
    seen: list[dict[str, Any]] = []

    async def record(payload: dict[str, Any]) -> int:
        seen.append(payload)
        return len(seen)

    async def explode(_payload: dict[str, Any]) -> None:
        raise ValueError("no such thing")

    queue.register("record", record, timeout_seconds=5)
    queue.register("explode", explode, timeout_seconds=5)
    await queue.start(run_jobs=True)
    try:
        assert await (await queue.enqueue("record", {"n": 1})).result(5) == 1
        assert seen == [{"n": 1}]
        with pytest.raises(JobLost, match="ValueError: no such thing"):
            await (await queue.enqueue("explode", {})).result(5)
    finally:
        await queue.stop()
    assert not queue.shared


async def test_the_in_process_queue_runs_periodic_jobs_in_this_process() -> None:
    queue = InProcessQueue()
    runs: list[int] = []

    async def sweep() -> None:
        runs.append(1)

    queue.every(0.01, "sweep", sweep)
    await queue.start(run_jobs=True)

    async def ran_twice() -> bool:
        return len(runs) >= 2

    try:
        await until(ran_twice, "the periodic job ran again")
    finally:
        await queue.stop()


async def test_a_task_runs_once_and_one_left_unfinished_past_its_attempts_is_failed(
    sqlite_url: str,
) -> None:
    database = Database(sqlite_url)
    queue = InProcessQueue()
    runner = TaskRunner(database, queue, heartbeat_seconds=1)
    ran: list[dict[str, Any]] = []

    async def probe(payload: dict[str, Any]) -> dict[str, Any]:
        ran.append(payload)
        return {"seen": payload["n"]}

    runner.register("probe", probe, timeout_seconds=60, attempts=2)
    await queue.start(run_jobs=True)
    stale = utcnow() - timedelta(seconds=2 * (60 + JOB_MARGIN_SECONDS + 3) + 1)
    try:
        async with database.session() as session:
            fresh = TaskRunner.submit(
                session, project_id="p", kind="probe", subject="s", prefix="pr"
            )
            done = TaskRunner.submit(
                session, project_id="p", kind="probe", subject="s", prefix="pr"
            )
            done.status = "completed"
            lost = TaskRunner.submit(
                session, project_id="p", kind="probe", subject="s", prefix="pr"
            )
            lost.status, lost.updated_at = "running", stale
            await session.commit()
        await runner.start(fresh, {"n": 1})
        await runner.start(done, {"n": 2})  # a retry of a task an attempt already ended
        await runner.wait()
        assert ran == [{"n": 1}]
        assert await runner.sweep_abandoned() == 1
        async with database.session() as session:
            rows = {
                row.id: (row.status, row.error, row.result)
                for row in await session.scalars(select(BackgroundTask))
            }
        assert rows[fresh.id] == ("completed", None, {"seen": 1})
        assert rows[done.id] == ("completed", None, None)
        assert rows[lost.id] == ("failed", ABANDONED, None)
    finally:
        await queue.stop()
        await database.dispose()


async def test_a_gateway_without_a_shared_queue_is_refused(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/t.db", tmp_path)
    with pytest.raises(ConfigError, match="--role gateway runs no background jobs"):
        create_app(settings, "gateway")
    with pytest.raises(ConfigError, match="JOB_QUEUE=redis needs REDIS_URL"):
        create_app(
            make_settings(f"sqlite+aiosqlite:///{tmp_path}/t.db", tmp_path, job_queue="redis")
        )


def test_the_worker_command_needs_the_shared_queue(tmp_path: Path) -> None:
    refused = tollhouse("worker", home=tmp_path / "home")
    assert refused.returncode == 2  # a configuration error
    assert "set JOB_QUEUE=redis and REDIS_URL" in refused.stderr


# --- SAQ on Redis --------------------------------------------------------------------------


async def test_a_job_enqueued_in_one_process_runs_on_a_worker_of_another(
    redis_url: str, queue_name: str
) -> None:
    async def double(payload: dict[str, Any]) -> int:
        return int(payload["n"]) * 2

    producer = SaqQueue(redis_url, queue_name, heartbeat_seconds=1)
    consumer = SaqQueue(redis_url, queue_name, heartbeat_seconds=1, worker_id="consumer")
    for queue in (producer, consumer):
        queue.register("double", double, timeout_seconds=10)
    await producer.start(run_jobs=False)
    await consumer.start(run_jobs=True)
    try:
        assert await (await producer.enqueue("double", {"n": 21}, key="answer")).result(10) == 42
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_job_whose_worker_is_killed_runs_again_on_another_worker(
    redis_url: str, queue_name: str
) -> None:
    counter = f"{queue_name}:attempts"
    script = Path(__file__).with_name("queue_worker.py")
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, str(script), redis_url, queue_name, counter
    )
    producer = SaqQueue(redis_url, queue_name, heartbeat_seconds=1)
    producer.register(
        "attempt", attempt_handler(redis_url, counter), timeout_seconds=60, attempts=2
    )
    survivor = SaqQueue(redis_url, queue_name, heartbeat_seconds=1, worker_id="survivor")
    survivor.register(
        "attempt", attempt_handler(redis_url, counter), timeout_seconds=60, attempts=2
    )
    await producer.start(run_jobs=False)
    redis = Redis.from_url(redis_url)
    try:
        handle = await producer.enqueue("attempt", {}, key="doomed")

        async def first_attempt_running() -> bool:
            return await redis.get(counter) == b"1"

        await until(first_attempt_running, "the other process took the job")
        doomed.send_signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL
        await survivor.start(run_jobs=True)
        # The dead worker's heartbeat lapses; the survivor's sweep takes the job back.
        assert await handle.result(WITHIN_SECONDS) == 2
        assert await redis.get(counter) == b"2"
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        await redis.aclose()
        await producer.stop()
        await survivor.stop()


async def test_a_periodic_job_runs_once_per_period_across_two_workers(
    redis_url: str, queue_name: str
) -> None:
    now = [1_000_000.0]
    runs: list[str] = []
    workers = [
        SaqQueue(redis_url, queue_name, heartbeat_seconds=1, clock=lambda: now[0], worker_id=name)
        for name in ("first", "second")
    ]
    for queue in workers:

        async def sweep(name: str = queue.worker_id) -> int:
            runs.append(name)
            return len(runs)

        queue.every(60, "sweep", sweep)
        await queue.start(run_jobs=True)
    backend = workers[0].backend

    async def settled(period: int) -> bool:
        looked = all(q._claimed.get("sweep") == period for q in workers)
        idle = await backend.count("queued") == 0 and await backend.count("active") == 0
        return looked and idle and len(runs) >= 1

    try:
        first = int(now[0] // 60)
        await until(lambda: settled(first), "both workers saw the period and the job ran")
        assert len(runs) == 1
        assert await workers[0].tick() == []
        assert await workers[1].tick() == []
        now[0] += 60
        await until(lambda: settled(first + 1), "the next period's run")
        assert len(runs) == 2
    finally:
        for queue in workers:
            await queue.stop()


async def test_a_callback_whose_worker_is_killed_mid_delivery_is_delivered_once_by_another(
    redis_url: str, queue_name: str, receiver: Receiver, tls_files: tuple[Path, Path]
) -> None:
    cafile = str(tls_files[0])
    receiver.reset(HELD)  # the first delivery is never answered: its worker dies waiting
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("callback_worker.py")),
        redis_url,
        queue_name,
        cafile,
    )
    producer, producer_sender = callback_queue(redis_url, queue_name, cafile)
    survivor, survivor_sender = callback_queue(redis_url, queue_name, cafile, "survivor")
    await producer.start(run_jobs=False)
    body = {"id": "tp_1", "status": "completed"}
    try:
        await producer_sender.enqueue(producer, receiver.url(), body, key="callback:tp_1")

        async def first_delivery_held() -> bool:
            return len(receiver.seen) == 1

        await until(first_delivery_held, "the other process took the callback")
        doomed.send_signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL
        await survivor.start(run_jobs=True)

        async def settled() -> bool:
            backend = producer.backend
            idle = await backend.count("queued") == 0 and await backend.count("active") == 0
            return idle and receiver.delivered >= 1

        await until(settled, "the survivor delivered the callback")
        assert receiver.delivered == 1
        assert len(receiver.seen) == 2
        assert [json.loads(seen.body) for seen in receiver.seen] == [body, body]
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
        await producer.stop()
        await survivor.stop()
        await producer_sender.close()
        await survivor_sender.close()


# --- generation runs as jobs ---------------------------------------------------------------


def queue_settings(
    database_url: str,
    tmp_path: Path,
    llm_peer: LLMPeer,
    redis_url: str,
    queue_name: str,
    **overrides: Any,
) -> Settings:
    """Settings of a gateway and its workers sharing this test's queue and Redis prefixes."""
    return make_settings(
        database_url,
        tmp_path,
        llm_base_url=llm_peer.openai_base_url,
        llm_api_key="peer-key",
        llm_max_retries=0,
        llm_retry_backoff_seconds=0,
        redis_url=redis_url,
        job_queue="redis",
        job_queue_name=queue_name,
        job_heartbeat_seconds=1,
        events_key_prefix=f"{queue_name}:events:",
        rate_limit_key_prefix=f"{queue_name}:rl:",
        metering_key_prefix=f"{queue_name}:meter:",
        invalidation_channel=f"{queue_name}:invalidate",
        **overrides,
    )


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A `tollhouse worker` in this process, stopped (SIGTERM's way) on leaving."""
    stop = asyncio.Event()
    running = asyncio.create_task(worker.work(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await running


@asynccontextmanager
async def gateway_and_worker(
    database_url: str, tmp_path: Path, llm_peer: LLMPeer, redis_url: str, queue_name: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A `--role gateway` app (enqueues only) and a `tollhouse worker` (runs the jobs)."""
    settings = queue_settings(database_url, tmp_path, llm_peer, redis_url, queue_name)
    async with (
        serving(create_app(settings, "gateway")) as url,
        running_worker(settings),
        httpx.AsyncClient(base_url=url, timeout=WITHIN_SECONDS) as http,
    ):
        yield http


async def test_a_gateway_enqueues_and_a_worker_runs_the_generation_charged_once(
    database_url: str, tmp_path: Path, llm_peer: LLMPeer, redis_url: str, queue_name: str
) -> None:
    script_scene(llm_peer.script)
    async with gateway_and_worker(database_url, tmp_path, llm_peer, redis_url, queue_name) as http:
        user = await resolve(http, "queued")
        response = await http.post(GENERATE + "/sync", json={"query": QUERY}, headers=as_user(user))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "completed"
        assert response.json()["year"] == 1969
        history = await http.get("/api/v1/credits/history", headers=as_user(user))
        moves = [(r["amount"], r["type"]) for r in history.json() if r["type"] != "signup_bonus"]
        assert moves == [(-5, "generation")]


async def test_a_generation_that_fails_on_a_worker_releases_its_hold(
    database_url: str, tmp_path: Path, llm_peer: LLMPeer, redis_url: str, queue_name: str
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.respond("JudgeVerdict", REJECTED)
    async with gateway_and_worker(database_url, tmp_path, llm_peer, redis_url, queue_name) as http:
        user = await resolve(http, "refunded")
        response = await http.post(
            GENERATE + "/sync", json={"query": "asdf asdf"}, headers=as_user(user)
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "failed"
        history = await http.get("/api/v1/credits/history", headers=as_user(user))
        moves = [(r["amount"], r["type"]) for r in history.json() if r["type"] != "signup_bonus"]
        assert moves == [(5, "refund"), (-5, "generation")]
        balance = await http.get("/api/v1/credits/balance", headers=as_user(user))
        assert balance.json()["balance"] == 50


# --- background tasks as jobs --------------------------------------------------------------


async def test_a_regrounding_submitted_on_a_gateway_waits_on_the_queue_and_a_worker_runs_it(
    database_url: str,
    tmp_path: Path,
    llm_peer: LLMPeer,
    redis_url: str,
    queue_name: str,
    clockchain_peer: ClockchainPeer,
) -> None:
    script_scene(llm_peer.script)
    settings = queue_settings(
        database_url,
        tmp_path,
        llm_peer,
        redis_url,
        queue_name,
        clockchain_service_url=clockchain_peer.url,
        clockchain_service_key=CLOCKCHAIN_KEY,
    )
    url = "/api/v1/internal/entities/fig_armstrong/reground"
    async with (
        serving(create_app(settings, "gateway")) as base,
        httpx.AsyncClient(base_url=base, timeout=WITHIN_SECONDS) as http,
    ):
        queued = await http.post(url, json={"deep": False}, headers=SERVICE)
        assert queued.status_code == 202, queued.text
        task_id = queued.json()["task_id"]
        # The gateway ran nothing: the job waits in Redis, the row says queued.
        observer = SaqQueue(redis_url, queue_name, heartbeat_seconds=1)
        await observer.start(run_jobs=False)
        try:
            assert await observer.backend.count("queued") == 1
        finally:
            await observer.stop()
        status = await http.get(f"{url}/{task_id}", headers=SERVICE)
        assert status.json()["status"] == "queued"
        assert not [r for r in clockchain_peer.received if r[0] == "PATCH"]

        async def ended() -> bool:
            body = (await http.get(f"{url}/{task_id}", headers=SERVICE)).json()
            return bool(body["status"] in ("completed", "failed"))

        async with running_worker(settings):
            await until(ended, "a worker ran the re-grounding")
        final = (await http.get(f"{url}/{task_id}", headers=SERVICE)).json()
        assert final["status"] == "completed", final
        assert final["confidence"] == 0.95
        grounded = [body for method, _path, body in clockchain_peer.received if method == "PATCH"]
        assert len(grounded) == 1
        assert grounded[0]["deep"] is False
