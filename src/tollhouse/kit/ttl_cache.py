"""A small bounded map whose entries expire: per-process caches of things verified recently."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        # Seconds on any steady scale; tests pass a clock they move by hand.
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < self.clock():
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        self._entries[key] = (self.clock() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard_where(self, predicate: Callable[[V], bool]) -> None:
        for key in [k for k, (_, value) in self._entries.items() if predicate(value)]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
