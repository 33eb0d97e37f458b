"""Short-lived, per-process memory of verified credentials and the users they name.

Caller resolution runs on every request; these caches make a repeated credential cost two
dictionary lookups instead of a signature check and a query (Envoy's jwt_authn caches
verified tokens the same way). Entries live at most CALLER_CACHE_SECONDS (default 2) and
never past a token's own `exp`: a deactivation or erasure is seen in this process at once
(`forget`), in the others as `kit/invalidation.py`'s message arrives (else within that
window). Only active users are kept, and both maps
are bounded, so callers cannot grow them at will. Cached users are detached copies: read
them freely, re-load before writing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached

from tollhouse.identity.models import User
from tollhouse.kit.ttl_cache import TTLCache

Clock = Callable[[], float]
TokenKind = Literal["access", "external", "end-user"]


@dataclass(frozen=True, slots=True)
class VerifiedFor:
    """What a token was verified for: a cached verdict answers only the same question.

    Without this a token checked by one project's IdP was taken as checked for any project,
    and an end-user token's claims were served to the access-token path.
    """

    kind: TokenKind
    issuer: str
    project_id: str


def detached_copy(user: User) -> User:
    copy = User(**{column.key: getattr(user, column.key) for column in inspect(User).column_attrs})
    make_transient_to_detached(copy)
    return copy


class UserCache:
    def __init__(
        self, ttl_seconds: float, max_entries: int = 10_000, clock: Clock = time.time
    ) -> None:
        self.ttl = ttl_seconds
        # Epoch seconds: entries and tokens' `exp` age on the one clock (tests move it by hand).
        self.clock = clock
        self._users: TTLCache[tuple[str, str, str], User] = TTLCache(max_entries, clock)
        self._tokens: TTLCache[tuple[VerifiedFor, str], Any] = TTLCache(max_entries, clock)

    def get(self, project_id: str, via: str, reference: str) -> User | None:
        return self._users.get((project_id, via, reference))

    def put(self, project_id: str, via: str, reference: str, user: User) -> User:
        """Remember `user` under `reference`; returns the detached copy callers should use."""
        copy = detached_copy(user)
        if user.is_active:
            self._users.put((project_id, via, reference), copy, self.ttl)
        return copy

    def forget(self, user_id: uuid.UUID | None) -> None:
        """Drop the user's cached copies (None: everyone's)."""
        if user_id is None:
            self._users.clear()
        else:
            self._users.discard_where(lambda user: user.id == user_id)

    def verified(self, purpose: VerifiedFor, token: str) -> Any:
        """What verifying `token` for `purpose` gave last time, if recent and not expired."""
        return self._tokens.get((purpose, token))

    def remember_verified(
        self, purpose: VerifiedFor, token: str, result: Any, expires_at: float
    ) -> None:
        self._tokens.put((purpose, token), result, min(self.ttl, expires_at - self.clock()))
