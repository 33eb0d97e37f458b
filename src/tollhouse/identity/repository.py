"""Every identity query; always scoped by project."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.dialect import insert_ignoring_conflicts
from tollhouse.identity.models import ErasedIdentity, RefreshToken, User


async def user_by_id(session: AsyncSession, project_id: str, user_id: uuid.UUID) -> User | None:
    return await session.scalar(
        select(User).where(User.id == user_id, User.project_id == project_id)
    )


async def user_by_external_id(
    session: AsyncSession, project_id: str, external_id: str
) -> User | None:
    return await session.scalar(
        select(User).where(User.external_id == external_id, User.project_id == project_id)
    )


async def user_by_reference(session: AsyncSession, project_id: str, reference: str) -> User | None:
    """A user named either by our id or by their external id (id first)."""
    try:
        user = await user_by_id(session, project_id, uuid.UUID(reference))
    except ValueError:
        user = None
    return user or await user_by_external_id(session, project_id, reference)


async def insert_user_if_absent(
    session: AsyncSession,
    project_id: str,
    external_id: str,
    email: str | None,
    display_name: str | None,
) -> uuid.UUID | None:
    """Insert-first find-or-create: the new id, or None when the external id already exists."""
    new_id = uuid.uuid4()
    inserted = await session.scalar(
        insert_ignoring_conflicts(session, User)
        .values(
            id=new_id,
            project_id=project_id,
            external_id=external_id,
            email=email,
            display_name=display_name,
        )
        .returning(User.id)
    )
    return inserted if inserted is not None else None


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


async def revoke_refresh_token(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Revoke one token if it is still live; False when someone else revoked it first."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_all_for_user(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def refresh_tokens_of(session: AsyncSession, user_id: uuid.UUID) -> list[RefreshToken]:
    rows = await session.scalars(
        select(RefreshToken)
        .where(RefreshToken.user_id == user_id)
        .order_by(RefreshToken.created_at)
    )
    return list(rows)


async def users_of_project(
    session: AsyncSession, project_id: str, *, limit: int, offset: int, q: str | None = None
) -> tuple[int, list[User]]:
    """A page of the project's users, newest first, and how many there are in all; `q`
    narrows to emails and external ids containing it (case-insensitive)."""
    scope = User.project_id == project_id
    if q and q.strip():
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", q.strip().lower()) + "%"
        scope = scope & or_(
            func.lower(User.email).like(pattern, escape="\\"),
            func.lower(User.external_id).like(pattern, escape="\\"),
        )
    total = await session.scalar(select(func.count()).select_from(User).where(scope))
    rows = await session.scalars(
        select(User)
        .where(scope)
        .order_by(User.created_at.desc(), User.id)
        .limit(limit)
        .offset(offset)
    )
    return total or 0, list(rows)


async def add_erased_identity(session: AsyncSession, project_id: str, digest: str) -> None:
    await session.execute(
        insert_ignoring_conflicts(session, ErasedIdentity).values(
            project_id=project_id, external_id_hash=digest
        )
    )


async def is_erased_identity(
    session: AsyncSession, project_id: str, digests: Sequence[str]
) -> bool:
    """Whether a tombstone holds any of `digests` (the forms one id may have been kept in)."""
    found = await session.scalar(
        select(ErasedIdentity.external_id_hash)
        .where(
            ErasedIdentity.project_id == project_id,
            ErasedIdentity.external_id_hash.in_(digests),
        )
        .limit(1)
    )
    return found is not None
