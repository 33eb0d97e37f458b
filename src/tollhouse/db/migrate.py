"""Alembic, driven from code: `tollhouse migrate` and the embedded default's auto-migrate.

Every CLI command on the embedded database asks "is it at head?" first, so that question is
answered without importing Alembic (about a fifth of a `tollhouse users list`): the current
revision is one row of `alembic_version`, and the head is read from the migration files' text.
Alembic is loaded only when there is something to apply.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from tollhouse.db.engine import create_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
_REVISION = re.compile(r'^revision(?:\s*:\s*str)?\s*=\s*"([^"]+)"\s*$', re.MULTILINE)
_DOWN_REVISION = re.compile(
    r'^down_revision(?:\s*:[^=]+)?\s*=\s*(?:None|"([^"]+)")\s*$', re.MULTILINE
)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> list[str]:
    """Bring the database at `url` to `revision`; the migrations applied, oldest first
    ("0010 image deletions"). Blocking: call it outside the event loop."""
    before = asyncio.run(current_revision(url))
    if revision == "head" and before == head_revision():
        return []  # skips loading Alembic, env.py and every model: the common case is cheap
    from alembic import command
    from alembic.script import ScriptDirectory

    command.upgrade(alembic_config(url), revision)
    after = asyncio.run(current_revision(url))
    if after is None or after == before:
        return []
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    applied = reversed(list(script.iterate_revisions(after, before)))
    return [f"{step.revision} {step.doc}" for step in applied]


def head_revision() -> str | None:
    """The revision no other migration builds on; Alembic's answer when the files' text
    does not name exactly one (a merge, a branch, an unusual spelling)."""
    return _head_from_text() or _alembic_head()


def _head_from_text() -> str | None:
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(text), _DOWN_REVISION.findall(text)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        parents.add(down[0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read_revision)
    finally:
        await engine.dispose()


def _read_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return str(revision) if revision is not None else None


def is_up_to_date(url: str) -> bool:
    return asyncio.run(current_revision(url)) == head_revision()
