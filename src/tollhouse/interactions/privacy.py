"""Chat sessions in a user's GDPR export; erasure deletes them with their messages."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity.models import User
from tollhouse.identity.privacy import export_section, on_erase
from tollhouse.interactions import repository, service


@export_section("chat_sessions")
async def export_sessions(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    rows = await repository.of_user(session, user.id)
    messages = await repository.messages(session, [row.id for row in rows])
    return [service.view(row, messages[row.id]).model_dump(mode="json") for row in rows]


@on_erase
async def erase_sessions(session: AsyncSession, user: User) -> None:
    await repository.remove(session, [row.id for row in await repository.of_user(session, user.id)])
