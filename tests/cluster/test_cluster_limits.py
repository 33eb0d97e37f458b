"""Limits that hold across replicas: a tier's usage limit and a project's rate limit, hit
from all three replicas at once (each called directly, and through nginx), over HTTP."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from itertools import cycle

import httpx
import pytest

from cluster_support import Cluster, PlatformProject, platform_project, poll

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

TIER_LIMIT = 50
CALLS = 200
RATE_LIMIT = 20
BURST = 60
WINDOW_SECONDS = 60  # metering/guards.py: a limit is per minute, windows on epoch minutes
# Counts reach the database every METERING_FLUSH_SECONDS (0.2 s in the cluster).
FLUSHED_WITHIN = 10.0


async def _clients(stack: AsyncExitStack, running: Cluster) -> list[httpx.AsyncClient]:
    """One client per replica and one for nginx."""
    clients = []
    for url in (*running.replicas, running.url):
        client = httpx.AsyncClient(base_url=url, timeout=30)
        clients.append(await stack.enter_async_context(client))
    return clients


def _spread(clients: list[httpx.AsyncClient], count: int) -> Iterator[httpx.AsyncClient]:
    """`count` clients, round robin: every replica and nginx take their share."""
    turn = cycle(clients)
    return (next(turn) for _ in range(count))


async def test_a_tier_limit_of_50_hit_from_every_replica_counts_exactly_50(
    running: Cluster,
) -> None:
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, running)
        lb = clients[-1]
        # The rate limit out of the way: this proof is about the tier's count.
        project = await platform_project(
            lb, {"name": "metered", "limit": TIER_LIMIT}, rate_limit_per_minute=100_000
        )
        user = await project.end_user(lb, "metered@example.com", "metered")

        async def track(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post("/api/data", json={}, headers=user)

        answers = await asyncio.gather(*(track(c) for c in _spread(clients, CALLS)))

        statuses = [answer.status_code for answer in answers]
        assert statuses.count(200) == TIER_LIMIT, sorted(set(statuses))
        refused = [answer for answer in answers if answer.status_code != 200]
        assert all(
            answer.status_code == 403 and answer.json()["error"] == "tier_limit_reached"
            for answer in refused
        ), {answer.text for answer in refused}
        counts = sorted(answer.json()["usage"]["count"] for answer in answers if answer.is_success)
        assert counts == list(range(1, TIER_LIMIT + 1))  # each unit counted once, in one order
        for client in clients:  # every replica reports the same count
            usage = await client.get("/api/usage", headers=user)
            assert usage.status_code == 200, usage.text
            assert (usage.json()["usageCount"], usage.json()["remaining"]) == (TIER_LIMIT, 0)
        await _assert_durable_count(running, project, TIER_LIMIT)


async def _assert_durable_count(running: Cluster, project: PlatformProject, units: int) -> None:
    """The batches every replica flushes add up to `units` in both tables."""

    async def written() -> bool:
        counted = await running.fetchval(
            "SELECT coalesce(sum(count), 0) FROM usage_counters WHERE project_id = $1", project.id
        )
        daily = await running.fetchval(
            "SELECT coalesce(sum(units), 0) FROM usage_daily WHERE project_id = $1", project.id
        )
        assert counted <= units, counted  # never more
        assert daily <= units, daily
        return bool(counted == units and daily == units)

    await poll(written, FLUSHED_WITHIN, f"{units} units in usage_counters and usage_daily")


async def test_a_rate_limit_of_n_a_minute_holds_across_replicas(running: Cluster) -> None:
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, running)
        lb = clients[-1]
        project = await platform_project(
            lb, {"name": "open", "limit": "unlimited"}, rate_limit_per_minute=RATE_LIMIT
        )
        # Windows are epoch minutes of the replicas' clock (this machine's: no clock can be
        # injected into a process), so a burst may straddle a window edge and rightly get up
        # to 2N through. The burst takes a second or two; edges are 60 s apart, so of two
        # bursts one after the other at most one can straddle. A burst that started and
        # ended in the same window is the proof; a straddling one is run again for a fresh
        # end user (a bucket of its own).
        for attempt in range(2):
            user = await project.end_user(lb, f"burst-{attempt}@example.com", "open")
            started = time.time()
            answers = await asyncio.gather(
                *(c.post("/api/data", json={}, headers=user) for c in _spread(clients, BURST))
            )
            ended = time.time()
            if started // WINDOW_SECONDS == ended // WINDOW_SECONDS:
                break
        else:
            raise AssertionError("two bursts in a row straddled a minute's edge")

        statuses = [answer.status_code for answer in answers]
        assert statuses.count(200) == RATE_LIMIT, sorted(set(statuses))
        refused = [answer for answer in answers if answer.status_code != 200]
        assert len(refused) == BURST - RATE_LIMIT
        window_end = (started // WINDOW_SECONDS + 1) * WINDOW_SECONDS
        for answer in refused:
            assert answer.status_code == 429
            assert answer.json()["error"] == "rate_limited"
            retry_after = int(answer.headers["Retry-After"])
            # Seconds until that window's end, as the replica saw it during the burst.
            assert math.ceil(window_end - ended) <= retry_after <= math.ceil(window_end - started)
            assert answer.json()["retryAfter"] == retry_after
