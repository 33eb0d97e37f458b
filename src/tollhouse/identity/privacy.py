"""GDPR export and erasure: each domain registers the section it owns.

Export gathers `{section: data}` from every registered exporter; erasure asks every domain
to forget what identifies the user while keeping financial records (anonymised).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity import repository, service
from tollhouse.identity.models import User

Exporter = Callable[[AsyncSession, User], Awaitable[Any]]
Eraser = Callable[[AsyncSession, User], Awaitable[None]]

_exporters: dict[str, Exporter] = {}
_erasers: list[Eraser] = []


def export_section(name: str) -> Callable[[Exporter], Exporter]:
    def register(exporter: Exporter) -> Exporter:
        _exporters[name] = exporter
        return exporter

    return register


def on_erase(eraser: Eraser) -> Eraser:
    _erasers.append(eraser)
    return eraser


async def export_user(session: AsyncSession, user: User) -> dict[str, Any]:
    return {name: await exporter(session, user) for name, exporter in _exporters.items()}


async def erase_user(session: AsyncSession, user: User, pepper: str) -> None:
    """`pepper` keys the tombstone of the external id (`service.erase_personal_data`)."""
    for eraser in _erasers:
        await eraser(session, user)
    await service.erase_personal_data(session, user, pepper)


@export_section("user")
async def _export_profile(_session: AsyncSession, user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "external_id": user.external_id,
        "email": user.email,
        "display_name": user.display_name,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "is_active": user.is_active,
    }


@export_section("sessions")
async def _export_sessions(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    return [
        {
            "created_at": token.created_at.isoformat(),
            "expires_at": token.expires_at.isoformat(),
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        }
        for token in await repository.refresh_tokens_of(session, user.id)
    ]
