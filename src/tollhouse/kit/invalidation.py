"""Dropping cached copies in every process when what they copy changes.

Each process keeps short-lived copies of what it checks on every request (verified keys,
users, plans, tier limits, routes). A change is dropped from this process's caches at once
and again when the transaction that made it commits (a request in between may have cached
the old row); at that commit it is also published on a Redis pub/sub channel (REDIS_URL),
and every other process's subscriber drops its copy as the message arrives, well within a
second. Without Redis, or while it is away, the caches' own TTL (CALLER_CACHE_SECONDS) is
the bound; after a lost subscription every cache is emptied, since messages may have been
missed.

A message names a kind of cache and what to drop from it ("key" and a key id, "user" and a
user id, "table" and a table name); a handler given None empties its whole cache.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = structlog.get_logger("tollhouse.invalidation")

Drop = Callable[[str | None], None]
_PENDING = "tollhouse.kit.invalidation.pending"
RESUBSCRIBE_SECONDS = 1.0


class Invalidation:
    def __init__(self, redis_url: str | None = None, channel: str = "tollhouse:invalidate"):
        self.channel = channel
        # Messages carry their sender, so a process does not apply its own twice.
        self.origin = uuid.uuid4().hex
        self._redis: Redis | None = Redis.from_url(redis_url) if redis_url else None
        self._drops: dict[str, list[Drop]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._sending: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Condition()
        # Messages from other processes applied here so far.
        self.received = 0

    def on(self, kind: str, drop: Drop) -> None:
        """Call `drop(ident)` when `kind` `ident` changes anywhere (None: drop everything)."""
        self._drops.setdefault(kind, []).append(drop)

    def on_commit(self, session: AsyncSession, kind: str, ident: str) -> None:
        """`ident` is changing in `session`: drop it here now, and everywhere on commit."""
        self._apply(kind, ident)
        session.sync_session.info.setdefault(_PENDING, []).append((self, kind, ident))

    def publish(self, kind: str, idents: Iterable[str]) -> None:
        """Tell the other processes (this one has dropped its copies already)."""
        if self._redis is None:
            return
        message = json.dumps({"origin": self.origin, "kind": kind, "ids": list(idents)})
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous script): nobody here to tell
            return
        task = loop.create_task(self._send(self._redis, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _apply(self, kind: str, ident: str | None) -> None:
        for drop in self._drops.get(kind, ()):
            drop(ident)

    def _apply_everything(self) -> None:
        for kind in self._drops:
            self._apply(kind, None)

    async def _send(self, redis: Redis, message: str) -> None:
        try:
            await redis.publish(self.channel, message)
        except RedisError as exc:  # the others fall back on their TTL
            log.warning("invalidation_not_published", error=str(exc))

    async def start(self) -> None:
        """Subscribe before the first request, so no change made after start-up is missed."""
        if self._redis is None:
            return
        pubsub: Any = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
        except RedisError as exc:
            log.warning("invalidation_unsubscribed", error=str(exc))
            await pubsub.aclose()
            pubsub = None
        self._listener = asyncio.create_task(self._listen(self._redis, pubsub))

    async def _listen(self, redis: Redis, pubsub: Any) -> None:
        try:
            await self._follow(redis, pubsub)
        finally:
            if self._pubsub is not None:
                await self._pubsub.aclose()

    async def _follow(self, redis: Redis, pubsub: Any) -> None:
        self._pubsub = pubsub
        while True:
            try:
                if pubsub is None:
                    pubsub = self._pubsub = redis.pubsub()
                    await pubsub.subscribe(self.channel)
                    self._apply_everything()  # what changed meanwhile was not heard
                    log.info("invalidation_resubscribed")
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        await self._receive(message["data"])
                raise RedisConnectionError("the subscription ended")
            except RedisError as exc:
                log.warning("invalidation_unsubscribed", error=str(exc))
                if pubsub is not None:
                    await pubsub.aclose()
                pubsub = self._pubsub = None
                await asyncio.sleep(RESUBSCRIBE_SECONDS)  # backoff before reconnecting

    async def _receive(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            kind, ids, origin = message["kind"], message["ids"], message["origin"]
        except (ValueError, KeyError, TypeError):
            log.warning("invalidation_unreadable")
            return
        if origin == self.origin:
            return
        for ident in ids:
            self._apply(str(kind), str(ident))
        async with self._arrived:
            self.received += 1
            self._arrived.notify_all()

    async def received_at_least(self, count: int) -> None:
        """Returns once `count` messages from other processes have been applied here."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.received >= count)

    async def stop(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    for invalidation, kind, ident in session.info.pop(_PENDING, ()):
        invalidation._apply(kind, ident)
        invalidation.publish(kind, [ident])


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
