"""`tollhouse worker`: runs the shared queue's jobs (JOB_QUEUE=redis), serves no HTTP.

Generation runs, callbacks and background tasks (re-grounding) enqueued by any replica,
and the cluster's periodic jobs (sweepers, purges, grants) once per period. SIGTERM or
SIGINT: stop taking jobs, let running ones finish for up to DRAIN_TIMEOUT_SECONDS, then
cancel the rest (a cancelled run fails and refunds itself; a cancelled task fails). A
worker killed outright leaves its jobs to the others (kit/queue.py).
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from prometheus_client import CollectorRegistry

from tollhouse import __version__, wiring
from tollhouse.config import ConfigError, Settings
from tollhouse.db.engine import Database
from tollhouse.kit.logging import configure_logging

log = structlog.get_logger("tollhouse.worker")


async def work(settings: Settings, stop: asyncio.Event) -> None:
    """Run jobs until `stop` is set."""
    queue = wiring.job_queue(settings)
    if not queue.shared:
        raise ConfigError(
            "tollhouse worker takes jobs from a shared queue: set JOB_QUEUE=redis and REDIS_URL."
        )
    database = Database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=settings.database_pool_pre_ping,
    )
    generation = wiring.generations(settings, database, CollectorRegistry(), queue)
    upstreams = wiring.upstream_context(settings)  # the clockchain, for re-grounding tasks
    wiring.background_tasks(generation, upstreams)
    assets = wiring.asset_context(settings)
    wiring.periodic_jobs(queue, settings, database, generation, assets)
    await queue.start(run_jobs=True)
    log.info("worker_started", version=__version__, queue=settings.job_queue_name)
    try:
        await stop.wait()
    finally:
        log.info("worker_stopping")
        await queue.stop()
        await generation.close()
        await upstreams.close()
        await assets.close()
        await database.dispose()


def run(settings: Settings) -> None:
    configure_logging(settings.log_level, json=settings.logs_as_json)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await work(settings, stop)

    asyncio.run(main())
