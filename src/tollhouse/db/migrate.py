"""Alembic, driven from code: `tollhouse migrate` and the embedded default's auto-migrate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from tollhouse.db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> list[str]:
    """Bring the database at `url` to `revision`; the migrations applied, oldest first
    ("0010 image deletions"). Blocking: call it outside the event loop."""
    before = asyncio.run(current_revision(url))
    if revision == "head" and before == head_revision():
        return []  # skips loading env.py and every model: the common case is cheap
    command.upgrade(alembic_config(url), revision)
    after = asyncio.run(current_revision(url))
    if after is None or after == before:
        return []
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    applied = reversed(list(script.iterate_revisions(after, before)))
    return [f"{step.revision} {step.doc}" for step in applied]


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision)
    finally:
        await engine.dispose()


def _read_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def is_up_to_date(url: str) -> bool:
    return asyncio.run(current_revision(url)) == head_revision()
