"""A worker that delivers callback jobs, in a process of its own for the test that kills it
(kill -9) mid-delivery:

    python tests/callback_worker.py REDIS_URL QUEUE_NAME CAFILE
"""

from __future__ import annotations

import asyncio
import ssl
import sys

from tollhouse.generation.callbacks import CALLBACK_JOB, CallbackSender
from tollhouse.kit.queue import SaqQueue


def callback_queue(
    redis_url: str, name: str, cafile: str, worker_id: str | None = None
) -> tuple[SaqQueue, CallbackSender]:
    """A queue whose callback jobs this sender delivers (one HTTP attempt each, a minute
    long: the receiver holding the request is the worker's last moment)."""
    sender = CallbackSender(
        allow_private=True,  # the receiver is on loopback
        max_attempts=1,
        backoff_seconds=0,
        timeout_seconds=60,
        verify=ssl.create_default_context(cafile=cafile),
    )
    queue = SaqQueue(redis_url, name, heartbeat_seconds=1, worker_id=worker_id)
    queue.register(
        CALLBACK_JOB, sender.deliver, timeout_seconds=sender.budget_seconds(), attempts=2
    )
    return queue, sender


async def main(redis_url: str, name: str, cafile: str) -> None:
    queue, _sender = callback_queue(redis_url, name, cafile)
    await queue.start(run_jobs=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
