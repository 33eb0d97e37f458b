"""kit/invalidation.py on its own: messages between processes on Redis, what a commit to a
watched table publishes, and Redis being away (the TTL stays the bound; nothing fails)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update

from platform_fixtures import database, new_project
from support import ClientFactory
from tollhouse.catalog.models import Tier
from tollhouse.kit.invalidation import Invalidation
from tollhouse.metering import caches

pytestmark = pytest.mark.anyio

WITHIN_SECONDS = 1.0


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Invalidation, Invalidation]]:
    url = os.environ.get("TOLLHOUSE_TEST_REDIS_URL")
    if not url:
        pytest.skip("needs TOLLHOUSE_TEST_REDIS_URL")
    channel = f"tollhouse:test:invalidate:{uuid.uuid4().hex}"
    a, b = Invalidation(url, channel), Invalidation(url, channel)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_a_message_reaches_the_other_process_not_its_sender(
    pair: tuple[Invalidation, Invalidation],
) -> None:
    a, b = pair
    dropped: dict[str, list[str | None]] = {"a": [], "b": []}
    a.on("table", dropped["a"].append)
    b.on("table", dropped["b"].append)
    a.publish("table", ["tiers", "subscriptions"])
    await asyncio.wait_for(b.received_at_least(1), WITHIN_SECONDS)
    assert dropped == {"a": [], "b": ["tiers", "subscriptions"]}
    assert a.received == 0


async def test_a_commit_to_a_watched_table_names_it_to_the_listeners(
    make_client: ClientFactory,
) -> None:
    client: httpx.AsyncClient = await make_client()
    keys = await new_project(client)
    written: list[list[str]] = []
    remove = caches.on_tables_committed(written.append)
    try:
        async with database(client).session() as session:
            await session.execute(
                update(Tier).where(Tier.project_id == keys.project_id).values(limit=50)
            )
    finally:
        remove()
    assert written == [["tiers"]]


async def test_with_redis_away_nothing_fails_and_the_ttl_stays_the_bound() -> None:
    away = Invalidation("redis://127.0.0.1:1/0", "tollhouse:test:away")
    dropped: list[str | None] = []
    away.on("key", dropped.append)
    await away.start()
    away.publish("key", ["k1"])  # logged, not raised
    await away.stop()
    assert dropped == []  # nothing arrived; the caches' TTL is the bound
