"""A job-queue worker in a process of its own, for tests that kill it (kill -9):

    python tests/queue_worker.py REDIS_URL QUEUE_NAME COUNTER_KEY

It runs `attempt` jobs: each counts itself in COUNTER_KEY; the first never ends (its worker
is there to be killed), later ones answer their attempt number.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from redis.asyncio import Redis

from tollhouse.kit.queue import SaqQueue

HEARTBEAT_SECONDS = 1.0


def attempt_handler(redis_url: str, counter_key: str) -> Any:
    async def attempt(_payload: dict[str, Any]) -> int:
        async with Redis.from_url(redis_url) as redis:
            number = int(await redis.incr(counter_key))
        if number == 1:
            await asyncio.Event().wait()  # until the process is killed
        return number

    return attempt


def worker_queue(redis_url: str, name: str, counter_key: str) -> SaqQueue:
    queue = SaqQueue(redis_url, name, heartbeat_seconds=HEARTBEAT_SECONDS)
    queue.register(
        "attempt", attempt_handler(redis_url, counter_key), timeout_seconds=60, attempts=2
    )
    return queue


async def main(redis_url: str, name: str, counter_key: str) -> None:
    queue = worker_queue(redis_url, name, counter_key)
    await queue.start(run_jobs=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
