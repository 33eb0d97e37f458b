"""Progress events of a generation, for anyone following it (SSE).

A topic (one generation) is an append-only list of events ending with a terminal one (`done` or
`error`). Following a topic replays everything published so far, then yields new events as they
come, and ends after the terminal event, so a client that connects late or reconnects misses
nothing. Topics are kept `retention_seconds` after they finish (while running, at least an
hour after the last event, so a stalled generation is eventually dropped too).

`InProcessBus` serves one process; `RedisBus` lets a follower on one replica see the events
of a generation running on another.

Close a `follow()` iterator you stop early (`contextlib.aclosing`), so the Redis subscription
is released at once rather than when the generator is garbage-collected.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis

TERMINAL_EVENTS = ("done", "error")
# How long a topic that is still running outlives its last event, at least.
RUNNING_RETENTION_SECONDS = 3600


@dataclass(frozen=True)
class GenerationEvent:
    event: str
    step: str
    data: Any
    progress: int
    error: str | None

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    def to_json(self) -> str:
        # Field order and compact separators are part of the wire format clients see.
        return json.dumps(
            {
                "event": self.event,
                "step": self.step,
                "data": self.data,
                "progress": self.progress,
                "error": self.error,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> GenerationEvent:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a generation event is a JSON object")
        error = raw.get("error")
        return cls(
            event=str(raw["event"]),
            step=str(raw["step"]),
            data=raw.get("data"),
            progress=int(raw["progress"]),
            error=None if error is None else str(error),
        )


class EventBus(Protocol):
    async def publish(self, topic: str, event: GenerationEvent) -> None: ...

    def follow(self, topic: str) -> AsyncGenerator[GenerationEvent, None]:
        """Every event of `topic` so far, then new ones as published; ends after a terminal
        one. Waits for a topic nobody has published on yet."""
        ...

    async def has(self, topic: str) -> bool:
        """Whether any event of `topic` is still retained."""
        ...

    async def close(self) -> None: ...


def _ttl(retention_seconds: int, terminal: bool) -> int:
    return retention_seconds if terminal else max(retention_seconds, RUNNING_RETENTION_SECONDS)


@dataclass(eq=False)
class _Topic:
    events: list[GenerationEvent] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    expires_at: float = math.inf
    finished: bool = False
    followers: int = 0


class InProcessBus:
    """Topics in this process's memory. Expired topics are dropped lazily, on publish/has/follow.

    `clock` (monotonic seconds) is injectable for tests.
    """

    def __init__(
        self, retention_seconds: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._retention = retention_seconds
        self._clock = clock
        self._topics: dict[str, _Topic] = {}

    def _expire(self) -> None:
        now = self._clock()
        for name in [name for name, topic in self._topics.items() if topic.expires_at <= now]:
            del self._topics[name]

    async def publish(self, topic: str, event: GenerationEvent) -> None:
        self._expire()
        entry = self._topics.setdefault(topic, _Topic())
        entry.events.append(event)
        entry.finished = entry.finished or event.terminal
        entry.expires_at = self._clock() + _ttl(self._retention, entry.finished)
        async with entry.changed:
            entry.changed.notify_all()

    async def follow(self, topic: str) -> AsyncGenerator[GenerationEvent, None]:
        self._expire()
        entry = self._topics.setdefault(topic, _Topic())
        entry.followers += 1
        index = 0
        try:
            while True:
                async with entry.changed:
                    while len(entry.events) <= index:
                        await entry.changed.wait()
                    batch = entry.events[index:]
                # Yield outside the lock: a slow follower must not hold up publishers.
                for event in batch:
                    index += 1
                    yield event
                    if event.terminal:
                        return
        finally:
            entry.followers -= 1
            # A topic only ever followed, never published on, goes with its last follower.
            if not entry.events and not entry.followers and self._topics.get(topic) is entry:
                del self._topics[topic]

    async def has(self, topic: str) -> bool:
        self._expire()
        entry = self._topics.get(topic)
        return entry is not None and bool(entry.events)

    async def close(self) -> None:
        self._topics.clear()


class RedisBus:
    """Each topic is a Redis list `<prefix><topic>` of event JSON, and a channel of the same
    name that announces each append. Replicas sharing Redis and prefix share every topic.

    A follower subscribes before it reads the list, then rereads from where it stopped on every
    announcement, so nothing published in between is lost or seen twice. It also rereads every
    `poll_seconds` without one, in case an announcement was lost (pub/sub is fire-and-forget).
    A client passed in stays the caller's to close; one made from a URL is closed by `close()`.
    """

    def __init__(
        self,
        client_or_url: Redis | str,
        prefix: str,
        retention_seconds: int,
        *,
        poll_seconds: float = 5.0,
    ) -> None:
        self._owns_client = isinstance(client_or_url, str)
        self._client = (
            Redis.from_url(client_or_url) if isinstance(client_or_url, str) else client_or_url
        )
        self._prefix = prefix
        self._retention = retention_seconds
        self._poll_seconds = poll_seconds

    async def publish(self, topic: str, event: GenerationEvent) -> None:
        key = self._prefix + topic
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, event.to_json())
            pipe.expire(key, _ttl(self._retention, event.terminal))
            pipe.publish(key, b"")
            await pipe.execute()

    async def follow(self, topic: str) -> AsyncGenerator[GenerationEvent, None]:
        key = self._prefix + topic
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(key)
            # Read the list only once Redis confirms the subscription: from then on every
            # append is announced to us.
            while True:
                message = await pubsub.get_message(timeout=self._poll_seconds)
                if message is not None and message["type"] == "subscribe":
                    break
            index = 0
            while True:
                for raw in await self._client.lrange(key, index, -1):
                    index += 1
                    event = GenerationEvent.from_json(raw)
                    yield event
                    if event.terminal:
                        return
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._poll_seconds)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def has(self, topic: str) -> bool:
        return bool(await self._client.exists(self._prefix + topic))

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def event_bus_from_url(redis_url: str | None, prefix: str, retention_seconds: int) -> EventBus:
    """Redis when a URL is configured (events reach followers on every replica), else this
    process's memory."""
    if not redis_url:
        return InProcessBus(retention_seconds)
    return RedisBus(redis_url, prefix, retention_seconds)
