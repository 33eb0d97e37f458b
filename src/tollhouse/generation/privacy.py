"""Timepoints in a user's GDPR export; erasure deletes them (they are the user's content),
and their images with them (queued for the storage sweeper)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation import repository
from tollhouse.generation.views import Links, response
from tollhouse.identity.models import User
from tollhouse.identity.privacy import export_section, on_erase

# The export is read by the person themself: relative image links are enough.
_LINKS = Links(share_url_base=None, public_base_url=None)


@export_section("timepoints")
async def export_timepoints(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    """Every timepoint of the user, soft-deleted ones included, in full."""
    return [
        response(timepoint, _LINKS, full=True).model_dump(mode="json")
        for timepoint in await repository.of_user(session, user.id)
    ]


@on_erase
async def erase_timepoints(session: AsyncSession, user: User) -> None:
    for timepoint in await repository.of_user(session, user.id):
        await repository.remove(session, timepoint)
