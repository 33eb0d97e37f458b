"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    # SQL parameters (token hashes, emails) stay out of error messages and logs.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, **kwargs)
    # One connection per process: SQLite runs one writer at a time anyway, and waiting in the
    # pool's queue wakes the next request at once, where SQLite's busy handler sleeps and polls.
    kwargs["pool_size"] = 1
    kwargs.pop("pool_pre_ping", None)  # a local file does not drop connections
    kwargs["max_overflow"] = 0
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
    )
    _make_sqlite_writers_wait(engine)
    return engine


def _make_sqlite_writers_wait(engine: AsyncEngine) -> None:
    """WAL + busy timeout + BEGIN IMMEDIATE: concurrent writers queue instead of failing.

    A deferred transaction that reads and then writes cannot wait for the lock (SQLite
    answers "database is locked" at once to avoid a deadlock); taking the write lock at
    BEGIN makes every writer wait its turn under the busy timeout instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus its session factory; one per app."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends cleanly, rolls back otherwise."""
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def ping(self, within_seconds: float) -> bool:
        try:
            async with asyncio.timeout(within_seconds), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
