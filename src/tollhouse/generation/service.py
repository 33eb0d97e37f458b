"""Timepoint rules: slugs, ownership, visibility, lists, deletion, and saving a finished run.

Visibility: a private timepoint is seen by its owner only, through every route (by id, by
slug, characters, image, stream, lists). A timepoint made without a user (a system or
anonymous caller) has no owner: it is public, and only non-user callers may change it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation import repository, tdf
from tollhouse.generation.errors import (
    InvalidVisibility,
    NotExportable,
    NotOwner,
    TimepointNotFound,
    TimepointPrivate,
)
from tollhouse.generation.models import VISIBILITIES, GenerationLog, Timepoint
from tollhouse.generation.pipeline import StepOutcome
from tollhouse.identity.caller import Caller, CallerKind
from tollhouse.kit.clock import utcnow

SLUG_BASE_MAX = 100


def slugify(query: str, year: int | None, suffix: str) -> str:
    """`apollo-11-landing-1969-c990b2ab`: the query's words, the year unless already there."""
    base = re.sub(r"[^\w\s-]", "", query.lower())
    base = re.sub(r"[\s_-]+", "-", base).strip("-") or "timepoint"
    if year is not None and str(abs(year)) not in base:
        base = f"{base}-{year}"
    return f"{base[:SLUG_BASE_MAX].rstrip('-')}-{suffix}"


def slug_suffix(timepoint_id: uuid.UUID) -> str:
    return timepoint_id.hex[:8]


def new_timepoint(
    caller: Caller,
    timepoint_id: uuid.UUID,
    query: str,
    preset: str,
    *,
    visibility: str,
    generate_image: bool,
) -> Timepoint:
    owner = caller.user.id if caller.user is not None else None
    now = utcnow()
    return Timepoint(
        id=timepoint_id,
        project_id=caller.project_id,
        user_id=owner,
        query=query,
        slug=slugify(query, None, slug_suffix(timepoint_id)),
        status="processing",
        # Without an owner nobody could ever see a private timepoint again.
        visibility=visibility if owner is not None else "public",
        preset=preset,
        generate_image=generate_image,
        tags=[],
        is_deleted=False,
        created_at=now,
        updated_at=now,
    )


def viewer_of(caller: Caller) -> uuid.UUID | None:
    return caller.user.id if caller.user is not None else None


def can_see(timepoint: Timepoint, caller: Caller) -> bool:
    if timepoint.visibility == "public" or caller.kind is CallerKind.ADMIN:
        return True
    return timepoint.user_id is not None and timepoint.user_id == viewer_of(caller)


def can_change(timepoint: Timepoint, caller: Caller) -> bool:
    if caller.kind is CallerKind.ADMIN:
        return True
    if timepoint.user_id is None:
        return caller.user is None
    return timepoint.user_id == viewer_of(caller)


async def find(session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID) -> Timepoint:
    timepoint = await repository.by_id(session, caller.project_id, timepoint_id)
    if timepoint is None:
        raise TimepointNotFound()
    return timepoint


async def find_visible(session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID) -> Timepoint:
    """404 when missing, 403 when private and not the caller's (soft-deleted still found)."""
    timepoint = await find(session, caller, timepoint_id)
    if not can_see(timepoint, caller):
        raise TimepointPrivate()
    return timepoint


async def latest_visible_child(
    session: AsyncSession, caller: Caller, parent_id: uuid.UUID
) -> Timepoint | None:
    """The newest timepoint made from `parent_id` that the caller may see (sequences)."""
    if caller.kind is CallerKind.ADMIN:
        return await repository.latest_child(session, caller.project_id, parent_id, None, True)
    return await repository.latest_child(session, caller.project_id, parent_id, viewer_of(caller))


async def find_visible_by_slug(session: AsyncSession, caller: Caller, slug: str) -> Timepoint:
    timepoint = await repository.by_slug(session, caller.project_id, slug)
    if timepoint is None:
        raise TimepointNotFound()
    if not can_see(timepoint, caller):
        raise TimepointPrivate()
    return timepoint


async def find_image_owner(
    session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID, *, signed: bool
) -> Timepoint:
    """The timepoint whose image is asked for. A valid signed URL names its timepoint on its
    own; a public timepoint's image is anyone's, whichever project made it; otherwise the
    usual visibility rules for the caller."""
    if signed or caller.kind is CallerKind.ANONYMOUS:
        timepoint = await repository.by_id_any_project(session, timepoint_id)
        if timepoint is None:
            raise TimepointNotFound()
        if not signed and timepoint.visibility != "public":
            raise TimepointPrivate()
        return timepoint
    return await find_visible(session, caller, timepoint_id)


async def list_visible(
    session: AsyncSession,
    caller: Caller,
    *,
    page: int,
    page_size: int,
    status: str | None,
    visibility: str | None,
) -> tuple[Sequence[Timepoint], int]:
    """Public plus the caller's own; `visibility=private` is the caller's private ones only."""
    viewer = viewer_of(caller)
    where = [repository.visible_filter(viewer)]
    if visibility == "private":
        if viewer is None:
            return [], 0
        where = [Timepoint.visibility == "private", Timepoint.user_id == viewer]
    elif visibility == "public":
        where = [Timepoint.visibility == "public"]
    query = repository.listing(caller.project_id, status=status, where=where)
    return await repository.page(session, query, page, page_size)


async def list_own(
    session: AsyncSession, caller: Caller, *, page: int, page_size: int, status: str | None
) -> tuple[Sequence[Timepoint], int]:
    assert caller.user is not None
    query = repository.listing(
        caller.project_id, status=status, where=[Timepoint.user_id == caller.user.id]
    )
    return await repository.page(session, query, page, page_size)


async def set_visibility(
    session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID, visibility: str
) -> Timepoint:
    if visibility not in VISIBILITIES:
        raise InvalidVisibility()
    timepoint = await find(session, caller, timepoint_id)
    if not can_change(timepoint, caller):
        raise NotOwner("Only the owner can change visibility")
    if visibility == "private" and timepoint.user_id is None:
        raise InvalidVisibility("A timepoint without an owner stays public.")
    timepoint.visibility = visibility
    timepoint.updated_at = utcnow()
    return timepoint


async def delete(
    session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID, *, permanent: bool
) -> Timepoint:
    timepoint = await find(session, caller, timepoint_id)
    if not can_change(timepoint, caller):
        raise NotOwner("Only the owner can delete this timepoint")
    if permanent:
        await repository.remove(session, timepoint)
    else:
        timepoint.is_deleted = True
        timepoint.deleted_at = timepoint.updated_at = utcnow()
    return timepoint


def _completed(timepoint: Timepoint) -> Timepoint:
    if timepoint.status != "completed":
        raise NotExportable()
    return timepoint


async def find_record(session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID) -> Timepoint:
    """A completed timepoint the caller may see, for its TDF record (the contract ignored
    visibility here)."""
    return _completed(await find_visible(session, caller, timepoint_id))


async def find_to_export(
    session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID
) -> Timepoint:
    """A completed timepoint the caller may change: writing to storage is the owner's call
    (the contract let anyone export anything)."""
    timepoint = await find(session, caller, timepoint_id)
    if not can_change(timepoint, caller):
        raise NotOwner("Only the owner can export this timepoint")
    return _completed(timepoint)


@dataclass(frozen=True, slots=True)
class Finished:
    """What a run produced, ready to be saved on its row."""

    status: str
    error: str | None
    fields: dict[str, Any]
    payload: dict[str, Any] | None
    text_model: str | None
    image_model: str | None
    image_key: str | None
    image_content_type: str | None
    generation_time_ms: int
    outcomes: Sequence[StepOutcome]


async def save_finished(
    session: AsyncSession, timepoint_id: uuid.UUID, done: Finished
) -> Timepoint:
    timepoint = await session.get(Timepoint, timepoint_id)
    if timepoint is None:
        raise TimepointNotFound("The timepoint was deleted while it was being generated.")
    for name, value in done.fields.items():
        setattr(timepoint, name, value)
    timepoint.status = done.status
    timepoint.error_message = done.error
    timepoint.tdf_payload = done.payload
    timepoint.tdf_hash = tdf.tdf_hash(done.payload) if done.payload is not None else None
    timepoint.text_model_used = done.text_model
    timepoint.image_model_used = done.image_model
    timepoint.image_key = done.image_key
    timepoint.image_content_type = done.image_content_type
    timepoint.generation_time_ms = done.generation_time_ms
    timepoint.slug = slugify(timepoint.query, timepoint.year, slug_suffix(timepoint.id))
    timepoint.updated_at = utcnow()
    repository.add_logs(
        session,
        [
            GenerationLog(
                timepoint_id=timepoint_id,
                step=outcome.name,
                status=outcome.status,
                provider=outcome.stats.provider,
                model=outcome.stats.model,
                latency_ms=outcome.latency_ms,
                llm_calls=outcome.stats.calls,
                input_tokens=outcome.stats.input_tokens,
                output_tokens=outcome.stats.output_tokens,
                error=outcome.error,
            )
            for outcome in done.outcomes
        ],
    )
    return timepoint
