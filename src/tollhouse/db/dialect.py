"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_ignoring_conflicts(session: AsyncSession, model: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING`: the insert-first way to find-or-create under races."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).on_conflict_do_nothing()


def upsert(
    session: AsyncSession,
    model: Any,
    conflict_columns: list[str],
    update: dict[str, Any],
    where: Any = None,
) -> Any:
    """`INSERT … ON CONFLICT (columns) DO UPDATE SET … [WHERE …]`, one statement on either
    backend (with `where`, a conflicting row that fails it is left alone: nothing returned)."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).on_conflict_do_update(
        index_elements=conflict_columns, set_=update, where=where
    )
