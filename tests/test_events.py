"""The generation event bus, in process and on Redis: replay then live, many followers,
the end at a terminal event, replicas, and retention."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import pytest
from redis.asyncio import Redis

from tollhouse.generation.events import (
    RUNNING_RETENTION_SECONDS,
    EventBus,
    GenerationEvent,
    InProcessBus,
    RedisBus,
    event_bus_from_url,
)

pytestmark = pytest.mark.anyio

REDIS_URL_ENV = "TOLLHOUSE_TEST_REDIS_URL"
TIMEOUT = 5.0

BusFactory = Callable[[], Awaitable[EventBus]]


def ev(event: str = "progress", step: str = "scene", progress: int = 0) -> GenerationEvent:
    return GenerationEvent(
        event=event, step=step, data={"n": progress}, progress=progress, error=None
    )


DONE = GenerationEvent(event="done", step="done", data={"id": "tp_1"}, progress=100, error=None)


def _redis_url_or_skip() -> str:
    redis_url = os.environ.get(REDIS_URL_ENV)
    if not redis_url:
        pytest.skip(f"Redis event bus skipped: {REDIS_URL_ENV} is not set")
    return redis_url


async def _delete_prefix(redis_url: str, prefix: str) -> None:
    async with Redis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)


@pytest.fixture
def prefix() -> str:
    return f"tollhouse-test:{uuid.uuid4().hex}:"


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[BusFactory]:
    """Builds buses of one backend. In memory there is one bus (one process); on Redis every
    call is a new "replica" on the same prefix, which is removed afterwards."""
    redis_url = _redis_url_or_skip() if request.param == "redis" else None
    built: list[EventBus] = []
    shared = InProcessBus(retention_seconds=60)

    async def factory() -> EventBus:
        bus: EventBus = shared if redis_url is None else RedisBus(redis_url, prefix, 60)
        built.append(bus)
        return bus

    yield factory
    for bus in built:
        await bus.close()
    if redis_url:
        await _delete_prefix(redis_url, prefix)


async def collect(bus: EventBus, topic: str) -> list[GenerationEvent]:
    async with aclosing(bus.follow(topic)) as events:
        return [event async for event in events]


# The event itself


def test_to_json_is_exact() -> None:
    event = GenerationEvent(
        event="progress",
        step="scene",
        data={"title": "Zürich", "n": [1, 2]},
        progress=40,
        error=None,
    )
    assert event.to_json() == (
        '{"event":"progress","step":"scene","data":{"title":"Zürich","n":[1,2]},'
        '"progress":40,"error":null}'
    )
    assert GenerationEvent.from_json(event.to_json()) == event
    assert GenerationEvent.from_json(event.to_json().encode()) == event
    failed = GenerationEvent(event="error", step="images", data=None, progress=70, error="boom")
    assert failed.to_json() == (
        '{"event":"error","step":"images","data":null,"progress":70,"error":"boom"}'
    )


def test_terminal_events() -> None:
    assert DONE.terminal
    assert GenerationEvent("error", "x", None, 0, "e").terminal
    assert not ev().terminal


# Both backends


async def test_late_follower_gets_the_replay_then_live_events(make_bus: BusFactory) -> None:
    bus = await make_bus()
    await bus.publish("t1", ev(progress=10))
    await bus.publish("t1", ev(progress=20))
    seen: asyncio.Queue[GenerationEvent] = asyncio.Queue()

    async def follow() -> None:
        async with aclosing(bus.follow("t1")) as events:
            async for event in events:
                seen.put_nowait(event)

    async def next_seen() -> GenerationEvent:
        return await asyncio.wait_for(seen.get(), TIMEOUT)

    task = asyncio.create_task(follow())
    assert [await next_seen(), await next_seen()] == [ev(progress=10), ev(progress=20)]
    await bus.publish("t1", ev(progress=30))
    assert await next_seen() == ev(progress=30)
    await bus.publish("t1", DONE)
    assert await next_seen() == DONE
    await asyncio.wait_for(task, TIMEOUT)
    assert seen.empty()


async def test_two_followers_each_see_every_event_once_in_order(make_bus: BusFactory) -> None:
    bus = await make_bus()
    first = asyncio.create_task(collect(bus, "t2"))
    second = asyncio.create_task(collect(bus, "t2"))
    published = [ev(progress=p) for p in range(0, 100, 10)] + [DONE]
    for event in published:
        await bus.publish("t2", event)
        await asyncio.sleep(0)  # interleave with the followers
    assert await asyncio.wait_for(first, TIMEOUT) == published
    assert await asyncio.wait_for(second, TIMEOUT) == published


async def test_follow_ends_at_the_terminal_event(make_bus: BusFactory) -> None:
    bus = await make_bus()
    follower = asyncio.create_task(collect(bus, "t3"))
    await bus.publish("t3", ev(progress=50))
    failed = GenerationEvent("error", "images", None, 60, "upstream failed")
    await bus.publish("t3", failed)
    await bus.publish("t3", ev(progress=70))  # after the end: never followed
    assert await asyncio.wait_for(follower, TIMEOUT) == [ev(progress=50), failed]


async def test_following_a_finished_topic_replays_and_ends(make_bus: BusFactory) -> None:
    bus = await make_bus()
    assert not await bus.has("t4")
    await bus.publish("t4", ev(progress=50))
    await bus.publish("t4", DONE)
    assert await bus.has("t4")
    assert await asyncio.wait_for(collect(bus, "t4"), TIMEOUT) == [ev(progress=50), DONE]
    # Again: the replay is not consumed by the first follower.
    assert await asyncio.wait_for(collect(bus, "t4"), TIMEOUT) == [ev(progress=50), DONE]


async def test_topics_are_separate(make_bus: BusFactory) -> None:
    bus = await make_bus()
    await bus.publish("a", ev(step="a"))
    await bus.publish("b", ev(step="b"))
    await bus.publish("b", DONE)
    await bus.publish("a", DONE)
    assert await asyncio.wait_for(collect(bus, "a"), TIMEOUT) == [ev(step="a"), DONE]


async def test_a_follower_on_one_replica_sees_another_replicas_events(
    make_bus: BusFactory,
) -> None:
    runner, viewer = await make_bus(), await make_bus()
    await runner.publish("t5", ev(progress=10))
    follower = asyncio.create_task(collect(viewer, "t5"))
    await asyncio.sleep(0.05)
    await runner.publish("t5", ev(progress=90))
    await runner.publish("t5", DONE)
    assert await asyncio.wait_for(follower, TIMEOUT) == [ev(progress=10), ev(progress=90), DONE]
    assert await viewer.has("t5")


# In process


async def test_in_process_topics_expire_after_retention() -> None:
    now = [1000.0]
    bus = InProcessBus(retention_seconds=30, clock=lambda: now[0])
    await bus.publish("finished", ev())
    await bus.publish("finished", DONE)
    await bus.publish("running", ev())
    now[0] += 29
    assert await bus.has("finished")
    now[0] += 2
    assert not await bus.has("finished")
    # A running topic lasts at least an hour after its last event, then goes too.
    assert await bus.has("running")
    now[0] += RUNNING_RETENTION_SECONDS
    assert not await bus.has("running")
    # An expired topic starts afresh.
    await bus.publish("finished", ev(progress=1))
    await bus.publish("finished", DONE)
    assert await collect(bus, "finished") == [ev(progress=1), DONE]


async def test_in_process_follower_that_leaves_early_leaves_nothing_behind() -> None:
    bus = InProcessBus(retention_seconds=30)
    async with aclosing(bus.follow("never")) as events:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await anext(events)
    assert not await bus.has("never")
    assert bus._topics == {}


# Redis specifics


async def test_redis_keys_expire_with_retention(prefix: str) -> None:
    redis_url = _redis_url_or_skip()
    bus = RedisBus(redis_url, prefix, retention_seconds=30)
    try:
        async with Redis.from_url(redis_url) as client:
            await bus.publish("t6", ev())
            assert RUNNING_RETENTION_SECONDS - 5 < await client.ttl(f"{prefix}t6") <= 3600
            await bus.publish("t6", DONE)
            assert 0 < await client.ttl(f"{prefix}t6") <= 30
            assert await client.llen(f"{prefix}t6") == 2
    finally:
        await bus.close()
        await _delete_prefix(redis_url, prefix)


async def test_bus_from_url() -> None:
    memory = event_bus_from_url(None, "p:", 60)
    assert isinstance(memory, InProcessBus)
    redis_bus = event_bus_from_url("redis://127.0.0.1:1/0", "p:", 60)  # not contacted
    assert isinstance(redis_bus, RedisBus)
    await redis_bus.close()
