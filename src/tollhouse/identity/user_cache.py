"""A short-lived, per-process cache of the users callers name, so auth costs no query.

Entries live `ttl` seconds (CALLER_CACHE_SECONDS, default 2): a deactivation or erasure in
this process is seen at once (`forget`), in other processes within the TTL. Only users that
exist and are active are cached, and the map is bounded, so callers cannot grow it at will.
The cached objects are detached copies: read them freely, re-load before writing.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached

from tollhouse.identity.models import User

Key = tuple[str, str, str]  # (project_id, how the user was named, the name)


def detached_copy(user: User) -> User:
    copy = User(**{column.key: getattr(user, column.key) for column in inspect(User).column_attrs})
    make_transient_to_detached(copy)
    return copy


class UserCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, tuple[float, User]] = OrderedDict()

    def get(self, project_id: str, via: str, reference: str) -> User | None:
        if self.ttl <= 0:
            return None
        key = (project_id, via, reference)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, user = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        return user

    def put(self, project_id: str, via: str, reference: str, user: User) -> User:
        """Remember `user` under `reference`; returns the detached copy callers should use."""
        copy = detached_copy(user)
        if self.ttl > 0 and user.is_active:
            key = (project_id, via, reference)
            self._entries[key] = (time.monotonic() + self.ttl, copy)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return copy

    def forget(self, user_id: uuid.UUID) -> None:
        for key in [k for k, (_, user) in self._entries.items() if user.id == user_id]:
            del self._entries[key]
