"""When each API key was last used, recorded off the request path.

A request only notes its key in a dict (no I/O, no lock: one event loop); a background job
writes what was noted every KEY_USAGE_FLUSH_SECONDS (1 s), and once more at shutdown, as one
UPDATE for all keys.
So `last_used_at` lags by about a second and a busy key costs one row write per flush,
not one per request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import case, update

from tollhouse.db.engine import Database
from tollhouse.kit.clock import utcnow
from tollhouse.tenancy.models import ApiKey


class KeyUsage:
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        self._pending: dict[str, datetime] = {}

    def touch(self, key_id: str) -> None:
        """Note that `key_id` was used now. The hot path: a key already noted in this window
        costs one dict lookup (its time is then the window's first use, at most one flush
        interval before its last)."""
        if key_id not in self._pending:
            self._pending[key_id] = self.clock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, database: Database) -> int:
        """Write every noted use in one statement; the number of keys written."""
        if not self._pending:
            return 0
        noted, self._pending = self._pending, {}
        try:
            async with database.session() as session:
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id.in_(noted))
                    .values(last_used_at=case(noted, value=ApiKey.id))
                    .execution_options(synchronize_session=False)
                )
        except BaseException:
            # Keep what could not be written for the next flush (newer notes win).
            self._pending = noted | self._pending
            raise
        return len(noted)
