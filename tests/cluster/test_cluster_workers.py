"""Background work under faults: `make cluster`'s nginx in front of three `--role gateway`
replicas and two `tollhouse worker` processes on PostgreSQL and Redis. A generation is
started over HTTP, the worker running it is killed (SIGKILL) mid-run, and the money is
checked over HTTP (balance, history, the ledger audit) and in the holds table.

Bounded in time; waits are bounded polls on what the cluster answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from llm_peer import LLMPeer
from scene_script import QUERY, script_scene
from support import ADMIN_KEY, JWT_SECRET, PEPPER, SERVICE, SERVICE_KEY, as_user, free_port
from tollhouse import cluster

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

GENERATE = "/api/v1/timepoints/generate"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
COST = 5  # generate_balanced
HEARTBEAT_SECONDS = 2
# Seconds before each scripted LLM answer: a run takes several, so a kill lands mid-run.
LLM_LATENCY = 0.4
WITHIN_SECONDS = 90.0
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Topology:
    url: str  # nginx
    run_dir: Path
    database_url: str  # asyncpg's spelling
    redis_url: str
    queue: str


def _requirements() -> tuple[str, str]:
    database = os.environ.get("TOLLHOUSE_TEST_DATABASE_URL")
    redis = os.environ.get("TOLLHOUSE_TEST_REDIS_URL")
    nginx = shutil.which("nginx") or any(os.access(p, os.X_OK) for p in cluster.NGINX_CANDIDATES)
    if not database or not redis or not nginx:
        pytest.skip("the cluster needs PostgreSQL, Redis (TOLLHOUSE_TEST_*_URL) and nginx")
    return database, redis


@pytest.fixture(scope="module")
def workers_cluster(
    tmp_path_factory: pytest.TempPathFactory, llm_peer_server: LLMPeer
) -> Iterator[Topology]:
    database, redis = _requirements()
    name = f"tollhouse_workers_{uuid.uuid4().hex[:12]}"
    url = make_url(database).set(database=name).render_as_string(hide_password=False)
    run = f"tollhouse:cluster-workers-test:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "TOLLHOUSE_ENV": "development",
        "DATABASE_URL": url,
        "REDIS_URL": redis,
        "RATE_LIMIT_KEY_PREFIX": f"{run}rl:",
        "EVENTS_KEY_PREFIX": f"{run}events:",
        "METERING_KEY_PREFIX": f"{run}meter:",
        "INVALIDATION_CHANNEL": f"{run}invalidate",
        "JOB_QUEUE": "redis",
        "JOB_QUEUE_NAME": name,
        "JOB_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "GENERATION_TIMEOUT_SECONDS": "60",
        "HOLD_SWEEP_INTERVAL_SECONDS": "1",
        "LLM_BASE_URL": llm_peer_server.openai_base_url,
        "LLM_API_KEY": "peer-key",
        "LLM_MAX_RETRIES": "0",
        "ADMIN_API_KEY": ADMIN_KEY,
        "FLASH_SERVICE_KEY": SERVICE_KEY,
        "JWT_SECRET_KEY": JWT_SECRET,
        "TOLLHOUSE_SECRET_PEPPER": PEPPER,
        "LOG_LEVEL": "WARNING",
    }
    run_dir = tmp_path_factory.mktemp("cluster-workers")
    port, replica_ports = free_port(), [free_port() for _ in range(3)]
    try:
        cluster.start(run_dir, "127.0.0.1", port, replica_ports, env, workers=2)
        yield Topology(
            f"http://127.0.0.1:{port}",
            run_dir,
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
            redis,
            name,
        )
    finally:
        cluster.stop(run_dir)
        asyncio.run(_forget(database, name, redis, run))


async def _forget(server_url: str, name: str, redis_url: str, run: str) -> None:
    server = make_url(server_url).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
    async with Redis.from_url(redis_url) as redis:
        keys = [key async for key in redis.scan_iter(f"saq:*{name}*")]
        keys += [key async for key in redis.scan_iter(f"{run}*")]
        if keys:
            await redis.delete(*keys)


async def until(condition: Callable[[], Awaitable[Any]], what: str) -> Any:
    """A bounded poll: the first truthy answer of `condition`."""
    for _ in range(int(WITHIN_SECONDS / POLL_SECONDS)):
        if answer := await condition():
            return answer
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"not within {WITHIN_SECONDS:g} s: {what}")


def _worker_pids(run_dir: Path) -> dict[int, str]:
    return {
        pid: name for name, pid in cluster.pids_of(run_dir).items() if name.startswith("worker")
    }


async def test_a_worker_killed_mid_generation_leaves_no_money_wrong(
    workers_cluster: Topology, llm_peer_server: LLMPeer
) -> None:
    peer = llm_peer_server
    peer.script.reset()
    script_scene(peer.script)
    peer.script.latency = LLM_LATENCY
    topology = workers_cluster
    workers = _worker_pids(topology.run_dir)
    assert len(workers) == 2
    redis = Redis.from_url(topology.redis_url)
    async with httpx.AsyncClient(base_url=topology.url, timeout=30) as lb:
        resolved = await lb.post(
            "/api/v1/users/resolve", json={"external_id": "killed-worker"}, headers=SERVICE
        )
        assert resolved.status_code == 200, resolved.text
        user = as_user(resolved.json()["user_id"])
        before = (await lb.get("/api/v1/credits/balance", headers=user)).json()["balance"]

        started = await lb.post(GENERATE, json={"query": QUERY}, headers=user)
        assert started.status_code == 200, started.text
        timepoint_id = started.json()["id"]
        job_key = f"saq:job:{topology.queue}:generation:{timepoint_id}"

        async def running_on() -> int | None:
            """The pid of the worker running the job, once it runs and has asked the LLM."""
            raw = await redis.get(job_key)
            job = json.loads(raw) if raw else {}
            if job.get("status") != "active" or not job.get("worker_id") or not peer.script.calls:
                return None
            host, pid = str(job["worker_id"]).rsplit(":", 1)
            assert host == socket.gethostname()
            return int(pid)

        victim = await until(running_on, "a worker is mid-generation")
        assert victim in workers, (victim, workers)
        os.kill(victim, signal.SIGKILL)

        async def finished() -> dict[str, Any] | None:
            response = await lb.get(f"/api/v1/timepoints/{timepoint_id}", headers=user)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body if body["status"] != "processing" else None

        timepoint = await until(finished, "the scene completes elsewhere or fails")
        after = (await lb.get("/api/v1/credits/balance", headers=user)).json()["balance"]
        history = await lb.get("/api/v1/credits/history", headers=user)
        moves = [(r["amount"], r["type"]) for r in history.json() if r["type"] != "signup_bonus"]
        if timepoint["status"] == "completed":
            # Charged exactly once, by the survivor that ran the job again.
            assert after == before - COST
            assert moves == [(-COST, "generation")]
            job = json.loads(await redis.get(job_key) or b"{}")
            assert job.get("status") == "complete"
            assert job.get("worker_id") != f"{socket.gethostname()}:{victim}"
        else:
            assert timepoint["status"] == "failed"
            assert after == before
            assert moves == [(COST, "refund"), (-COST, "generation")]

        audit = await lb.get("/api/v1/credits/admin/audit", headers=ADMIN)
        assert audit.status_code == 200, audit.text
        assert audit.json()["ok"] is True, audit.json()
    await redis.aclose()

    connection = await asyncpg.connect(topology.database_url)
    try:
        settled = await connection.fetchval(
            "SELECT status FROM credit_holds WHERE reference_id = $1", timepoint_id
        )
        overdue = await connection.fetchval(
            "SELECT count(*) FROM credit_holds WHERE status = 'held' "
            "AND expires_at < (now() AT TIME ZONE 'utc')"
        )
    finally:
        await connection.close()
    assert settled == ("captured" if timepoint["status"] == "completed" else "released")
    assert overdue == 0
