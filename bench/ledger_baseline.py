"""The baseline for bench/ledger.py: our spend's SQL sent straight through the driver.

Each `spend` is the statement pair `tollhouse.ledger.service.spend` emits, copied from its
SQL log (same columns, same conditional UPDATE … RETURNING, same INSERT), in one transaction
begun the way our engine begins it: asyncpg's default on PostgreSQL, `BEGIN IMMEDIATE` with
the engine's PRAGMAs on SQLite. What it leaves out is our code path: the ORM, the session,
SQLAlchemy's pool (and its pre-ping), so ours/raw is what that path costs.

The drivers also bulk-load transaction history for the balance-read scenario: inserting
100,000 rows one `grant` at a time would take minutes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import aiosqlite
import asyncpg

from tollhouse.db.engine import SQLITE_BUSY_TIMEOUT_MS
from tollhouse.kit.clock import utcnow

SPEND_TYPE = "generation"
SEED_TYPE = "admin_grant"


class InsufficientBalance(RuntimeError):
    """The conditional UPDATE matched no row: the seeded balance ran out."""


class RawLedger(Protocol):
    async def spend(self, account_id: uuid.UUID, amount: int) -> int: ...

    async def seed_history(self, account_id: uuid.UUID, count: int) -> None:
        """Append `count` +1 transactions to an account that has none, and match its balance."""

    async def close(self) -> None: ...


# --- PostgreSQL ------------------------------------------------------------------------------

PG_SPEND_UPDATE = """
UPDATE credit_accounts
   SET balance = (credit_accounts.balance + $1::BIGINT),
       lifetime_earned = (credit_accounts.lifetime_earned + $2::BIGINT),
       lifetime_spent = (credit_accounts.lifetime_spent + $3::BIGINT),
       updated_at = $4::TIMESTAMP WITH TIME ZONE
 WHERE credit_accounts.id = $5::UUID AND credit_accounts.balance >= $6::BIGINT
RETURNING credit_accounts.balance
"""
PG_SPEND_INSERT = """
INSERT INTO credit_transactions (account_id, amount, balance_after, type, reference_id,
                                 description, idempotency_key, hold_id, created_at)
VALUES ($1::UUID, $2::BIGINT, $3::BIGINT, $4::VARCHAR, $5::VARCHAR, $6::VARCHAR, $7::VARCHAR,
        $8::UUID, $9::TIMESTAMP WITH TIME ZONE)
RETURNING credit_transactions.id
"""
# ORDER BY n: ids follow n, so each balance_after is the running sum of the rows before it.
PG_SEED_HISTORY = """
INSERT INTO credit_transactions (account_id, amount, balance_after, type, created_at)
SELECT $1::UUID, 1, n, $2::VARCHAR, $3::TIMESTAMP WITH TIME ZONE
  FROM generate_series(1, $4::BIGINT) AS n
 ORDER BY n
"""
PG_SEED_BALANCE = """
UPDATE credit_accounts
   SET balance = balance + $2::BIGINT, lifetime_earned = lifetime_earned + $2::BIGINT
 WHERE id = $1::UUID
"""


class AsyncpgLedger:
    """A pool of `size` asyncpg connections, as many as our engine gets."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int) -> AsyncpgLedger:
        return cls(await asyncpg.create_pool(dsn, min_size=size, max_size=size))

    async def spend(self, account_id: uuid.UUID, amount: int) -> int:
        now = utcnow()
        async with self._pool.acquire() as conn, conn.transaction():
            balance = await conn.fetchval(
                PG_SPEND_UPDATE, -amount, 0, amount, now, account_id, amount
            )
            if balance is None:
                raise InsufficientBalance(str(account_id))
            await conn.fetchval(
                PG_SPEND_INSERT,
                account_id,
                -amount,
                balance,
                SPEND_TYPE,
                None,
                None,
                None,
                None,
                now,
            )
        return int(balance)

    async def seed_history(self, account_id: uuid.UUID, count: int) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(PG_SEED_HISTORY, account_id, SEED_TYPE, utcnow(), count)
            await conn.execute(PG_SEED_BALANCE, account_id, count)

    async def close(self) -> None:
        await self._pool.close()


# --- SQLite ----------------------------------------------------------------------------------

SQLITE_SPEND_UPDATE = """
UPDATE credit_accounts
   SET balance = (credit_accounts.balance + ?),
       lifetime_earned = (credit_accounts.lifetime_earned + ?),
       lifetime_spent = (credit_accounts.lifetime_spent + ?),
       updated_at = ?
 WHERE credit_accounts.id = ? AND credit_accounts.balance >= ?
RETURNING balance
"""
SQLITE_SPEND_INSERT = """
INSERT INTO credit_transactions (account_id, amount, balance_after, type, reference_id,
                                 description, idempotency_key, hold_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SQLITE_SEED_HISTORY = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
INSERT INTO credit_transactions (account_id, amount, balance_after, type, created_at)
SELECT ?, 1, n, ?, ? FROM seq ORDER BY n
"""
SQLITE_SEED_BALANCE = """
UPDATE credit_accounts SET balance = balance + ?, lifetime_earned = lifetime_earned + ?
 WHERE id = ?
"""
# The PRAGMAs tollhouse.db.engine sets on every connection.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def _sqlite_uuid(value: uuid.UUID) -> str:
    # SQLAlchemy's Uuid type stores 32 hex digits on SQLite; the raw rows must match ours.
    return value.hex


def _sqlite_datetime(value: datetime) -> str:
    # SQLAlchemy's SQLite DateTime format (naive UTC, always with microseconds).
    return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


class SqliteLedger:
    """`size` aiosqlite connections handed out through a queue, like a pool."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self._connections = connections
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for connection in connections:
            self._idle.put_nowait(connection)

    @classmethod
    async def open(cls, path: str, size: int) -> SqliteLedger:
        connections = [await cls._connect(path) for _ in range(size)]
        return cls(connections)

    @staticmethod
    async def _connect(path: str) -> aiosqlite.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, as the engine does.
        connection = await aiosqlite.connect(
            path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        for pragma in SQLITE_PRAGMAS:
            await connection.execute(pragma)
        return connection

    @asynccontextmanager
    async def _immediate(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection inside BEGIN IMMEDIATE; COMMIT on a clean exit, ROLLBACK otherwise."""
        connection = await self._idle.get()
        try:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")
        finally:
            self._idle.put_nowait(connection)

    async def spend(self, account_id: uuid.UUID, amount: int) -> int:
        now, account = _sqlite_datetime(utcnow()), _sqlite_uuid(account_id)
        async with self._immediate() as connection:
            balance = await self._debit(connection, account, amount, now)
            await connection.execute(
                SQLITE_SPEND_INSERT,
                (account, -amount, balance, SPEND_TYPE, None, None, None, None, now),
            )
        return balance

    @staticmethod
    async def _debit(connection: aiosqlite.Connection, account: str, amount: int, now: str) -> int:
        params = (-amount, 0, amount, now, account, amount)
        async with connection.execute(SQLITE_SPEND_UPDATE, params) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise InsufficientBalance(account)
        return int(row[0])

    async def seed_history(self, account_id: uuid.UUID, count: int) -> None:
        account, now = _sqlite_uuid(account_id), _sqlite_datetime(utcnow())
        async with self._immediate() as connection:
            await connection.execute(SQLITE_SEED_HISTORY, (count, account, SEED_TYPE, now))
            await connection.execute(SQLITE_SEED_BALANCE, (count, count, account))

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()
