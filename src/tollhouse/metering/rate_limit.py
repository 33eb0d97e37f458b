"""Fixed-window rate limits: at most `limit` hits per key per window of `window_seconds`.

A window is `epoch_seconds // window_seconds`, so every replica agrees on its edges (up to
clock skew). A burst can reach twice the limit across one edge; that is the price of one counter per
key and one round trip. Two backends behind one interface: `MemoryRateLimiter` (one process,
the embedded default) and `RedisRateLimiter` (shared by every replica: INCR + EXPIREAT in
one MULTI, so concurrent hits can never be allowed past the limit).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis

Clock = Callable[[], float]
DEFAULT_PREFIX = "tollhouse:rl:"


@dataclass(frozen=True, slots=True)
class RateDecision:
    """`retry_after` is 0 when allowed; `reset_after` is always the seconds left in the
    window (for X-RateLimit-Reset)."""

    allowed: bool
    remaining: int
    retry_after: int
    reset_after: int


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int = 60) -> RateDecision: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Window:
    index: int
    end: int  # epoch seconds, exclusive


def _window(now: float, window_seconds: int) -> _Window:
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")
    index = int(now // window_seconds)
    return _Window(index, (index + 1) * window_seconds)


def _decide(count: int, limit: int, window: _Window, now: float) -> RateDecision:
    reset_after = max(math.ceil(window.end - now), 1)
    allowed = count <= limit
    return RateDecision(
        allowed=allowed,
        remaining=max(limit - count, 0),
        retry_after=0 if allowed else reset_after,
        reset_after=reset_after,
    )


class MemoryRateLimiter:
    """Per process. Entries are kept in the order their windows began, so expired ones are
    dropped from the front in O(1); past `max_keys` the oldest go first (those keys start
    a fresh count: bounded memory fails open, never closed)."""

    def __init__(self, max_keys: int = 100_000, clock: Clock = time.time) -> None:
        self._max_keys = max_keys
        self._clock = clock
        # (key, window_seconds) → (window, hits in it)
        self._entries: OrderedDict[tuple[str, int], tuple[_Window, int]] = OrderedDict()

    async def hit(self, key: str, limit: int, window_seconds: int = 60) -> RateDecision:
        now = self._clock()
        window = _window(now, window_seconds)
        self._expire(now)
        slot = (key, window_seconds)
        current = self._entries.get(slot)
        if current is None or current[0].index != window.index:
            self._entries.pop(slot, None)  # re-inserted at the back: its window is the newest
            current = (window, 0)
        count = current[1] + 1
        self._entries[slot] = (window, count)
        return _decide(count, limit, window, now)

    def _expire(self, now: float) -> None:
        while self._entries:
            window, _count = next(iter(self._entries.values()))
            if window.end > now and len(self._entries) < self._max_keys:
                return
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    async def close(self) -> None:
        self._entries.clear()


class RedisRateLimiter:
    """Shared by every process that names the same Redis and prefix. Each window is its own
    key (`<prefix><key>:<seconds>:<index>`) that expires one second after the window ends."""

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time):
        self._client = client
        self._prefix = prefix
        self._clock = clock

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.time,
        max_connections: int = 50,
        pool_timeout: float = 5.0,
    ) -> RedisRateLimiter:
        """A client of its own whose pool makes a burst of hits wait for a connection (the
        default pool raises "Too many connections" instead)."""
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout
        )
        return cls(Redis.from_pool(pool), prefix, clock)

    async def hit(self, key: str, limit: int, window_seconds: int = 60) -> RateDecision:
        now = self._clock()
        window = _window(now, window_seconds)
        redis_key = f"{self._prefix}{key}:{window_seconds}:{window.index}"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(redis_key)
            pipe.expireat(redis_key, window.end + 1)
            count, _ = await pipe.execute()
        return _decide(int(count), limit, window, now)

    async def close(self) -> None:
        await self._client.aclose()


def rate_limiter_from_url(
    redis_url: str | None, prefix: str = DEFAULT_PREFIX, clock: Clock = time.time
) -> RateLimiter:
    """Redis when a URL is configured (limits hold across replicas), else this process's
    memory. `clock` decides the windows (tests pin it so no window rolls mid-test)."""
    if not redis_url:
        return MemoryRateLimiter(clock=clock)
    return RedisRateLimiter.from_url(redis_url, prefix, clock)
