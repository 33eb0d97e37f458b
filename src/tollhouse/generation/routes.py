"""/api/v1/timepoints: generate (async, sync, stream), read, list, follow, change, delete.

Every generate route checks, in order, before anything is charged: a provider is configured
(503), the request and its model policy are valid (422), the callback URL is allowed (400);
then it holds the preset's price (402 when short) and starts the one run task.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from tollhouse.db.session import SessionDep
from tollhouse.generation import launch, runs, service, tdf, views
from tollhouse.generation.errors import (
    GenerationFailed,
    GenerationTimedOut,
    NoCharacters,
    NoImage,
    TimepointNotFound,
)
from tollhouse.generation.events import GenerationEvent
from tollhouse.generation.models import Timepoint
from tollhouse.generation.runs import Generations
from tollhouse.generation.schemas import (
    CharactersResponse,
    Deleted,
    GenerateRequest,
    GenerationStarted,
    TimepointPage,
    TimepointResponse,
    TimepointSummaryPage,
    VisibilityUpdate,
)
from tollhouse.identity.caller import Caller, CallerDep, GatewayCaller, UserCaller
from tollhouse.kit import sse
from tollhouse.kit.clock import utcnow
from tollhouse.kit.idempotency import IdempotencyDep
from tollhouse.kit.paging import Page, PageSize

router = APIRouter(prefix="/api/v1/timepoints", tags=["timepoints"])
mine = APIRouter(prefix="/api/v1/users/me", tags=["timepoints"])

StatusFilter = Annotated[Literal["processing", "completed", "failed"] | None, Query()]


generations = launch.generations


async def _timepoint_id(timepoint_id: str) -> uuid.UUID:
    """flash-contract §8.4, lenient on purpose: an id that is not a UUID names no timepoint,
    so it is a 404 like any other unknown id (not a 422)."""
    try:
        return uuid.UUID(timepoint_id)
    except ValueError as exc:
        raise TimepointNotFound() from exc


TimepointId = Annotated[uuid.UUID, Depends(_timepoint_id)]


def links(request: Request) -> views.Links:
    """Absolute links for this request (PUBLIC_BASE_URL, else the address it came in on)."""
    return generations(request).links.at(str(request.base_url))


def _idempotency_scope(caller: Caller) -> str:
    """One caller's keys never answer another's requests."""
    who = str(caller.user.id) if caller.user is not None else caller.kind.value
    return f"generate|{caller.project_id}|{who}"


@router.post("/generate", response_model=GenerationStarted)
async def generate(
    body: GenerateRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Any:
    """Start a generation in the background; `callback_url` is told when it ends.
    With `Idempotency-Key`, a retried request answers the first one's id, charged once."""

    async def work() -> GenerationStarted:
        job, _ = await launch.begin(body, request, caller, session, callback_url=body.callback_url)
        return GenerationStarted(
            id=job.timepoint_id,
            status="processing",
            message=f"Generation started for '{body.query}'",
            request_context=body.request_context,
        )

    return await idempotency.run(_idempotency_scope(caller), work)


@router.post("/generate/sync", response_model=TimepointResponse)
async def generate_sync(
    body: GenerateRequest, request: Request, caller: GatewayCaller, session: SessionDep
) -> TimepointResponse:
    """Generate and answer with the whole timepoint (504 after GENERATION_TIMEOUT_SECONDS)."""
    job, task = await launch.begin(body, request, caller, session)
    # Shielded: a client that hangs up does not cancel the run.
    outcome = await asyncio.shield(task)
    if outcome.interrupted == runs.TIMED_OUT:
        raise GenerationTimedOut(outcome.error)
    if outcome.interrupted is not None:
        raise GenerationFailed(outcome.error)
    timepoint = await service.find(session, caller, job.timepoint_id)
    await session.refresh(timepoint)
    return views.response(
        timepoint, links(request), full=True, request_context=body.request_context
    )


def _frames(domain: Generations, events: AsyncIterator[GenerationEvent]) -> AsyncIterator[bytes]:
    async def encoded() -> AsyncIterator[bytes]:
        async for event in events:
            yield sse.frame(event.to_json())

    return sse.with_keepalive(encoded(), domain.settings.sse_keepalive_seconds, domain.handed_off)


def _event_stream(domain: Generations, events: AsyncIterator[GenerationEvent]) -> StreamingResponse:
    return StreamingResponse(
        _frames(domain, events),
        media_type=sse.MEDIA_TYPE,
        headers=sse.HEADERS,
    )


def follow_new_run(domain: Generations, timepoint_id: uuid.UUID) -> StreamingResponse:
    """The SSE response following a run just started (other domains start runs too)."""
    return _event_stream(domain, launch.follow(domain, timepoint_id, utcnow()))


@router.post("/generate/stream")
async def generate_stream(
    body: GenerateRequest, request: Request, caller: GatewayCaller, session: SessionDep
) -> StreamingResponse:
    """Generate, sending an SSE frame per finished step; errors before the stream are JSON."""
    job, _ = await launch.begin(body, request, caller, session)
    return follow_new_run(generations(request), job.timepoint_id)


@router.get("", response_model=TimepointPage)
async def list_timepoints(
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
    page: Page = 1,
    page_size: PageSize = 20,
    status: StatusFilter = None,
    visibility: Annotated[Literal["public", "private"] | None, Query()] = None,
) -> TimepointPage:
    rows, total = await service.list_visible(
        session, caller, page=page, page_size=page_size, status=status, visibility=visibility
    )
    here = links(request)
    return TimepointPage(
        items=[views.response(row, here) for row in rows],
        total=total,
        page=page,
        page_size=page_size,
    )


async def _view(
    request: Request, timepoint: Timepoint, *, full: bool, include_image: bool
) -> TimepointResponse:
    domain = generations(request)
    image: bytes | None = None
    if include_image and timepoint.image_key is not None:
        stored = await domain.storage.get(timepoint.image_key)
        image = stored.data if stored is not None else None
    return views.response(timepoint, links(request), full=full, image=image)


@router.get("/slug/{slug}", response_model=TimepointResponse)
async def get_by_slug(
    slug: str,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
    full: bool = False,
    include_image: bool = False,
) -> TimepointResponse:
    timepoint = await service.find_visible_by_slug(session, caller, slug)
    return await _view(request, timepoint, full=full, include_image=include_image)


@router.get("/{timepoint_id}", response_model=TimepointResponse)
async def get_timepoint(
    timepoint_id: TimepointId,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
    full: bool = False,
    include_image: bool = False,
) -> TimepointResponse:
    timepoint = await service.find_visible(session, caller, timepoint_id)
    return await _view(request, timepoint, full=full, include_image=include_image)


@router.get("/{timepoint_id}/characters", response_model=CharactersResponse)
async def get_characters(
    timepoint_id: TimepointId, caller: GatewayCaller, session: SessionDep
) -> CharactersResponse:
    timepoint = await service.find_visible(session, caller, timepoint_id)
    characters = views.characters(timepoint)
    if characters is None:
        raise NoCharacters()
    return characters


@router.get("/{timepoint_id}/image")
async def get_image(
    timepoint_id: TimepointId,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    expires: int | None = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """The scene's image bytes: a public timepoint's for anyone (browsers load it from
    `image_url`), a private one's for its owner or with the signed URL its owner was given."""
    domain = generations(request)
    signed = (
        expires is not None
        and signature is not None
        and domain.links.signed_image_ok(timepoint_id, expires, signature)
    )
    timepoint = await service.find_image_owner(session, caller, timepoint_id, signed=signed)
    stored = None
    if timepoint.image_key is not None:
        stored = await domain.storage.get(timepoint.image_key)
    if stored is None:
        raise NoImage()
    cache = "public, max-age=3600" if timepoint.visibility == "public" else "private, no-store"
    return Response(stored.data, media_type=stored.content_type, headers={"Cache-Control": cache})


@router.get("/{timepoint_id}/tdf")
async def get_tdf(
    timepoint_id: TimepointId, caller: GatewayCaller, session: SessionDep
) -> dict[str, Any]:
    """The scene as a TDF record, as the clockchain's `ingest/tdf` takes it."""
    return tdf.record(await service.find_record(session, caller, timepoint_id))


@router.post("/{timepoint_id}/export", response_model=TimepointResponse)
async def export_timepoint(
    timepoint_id: TimepointId, request: Request, caller: GatewayCaller, session: SessionDep
) -> TimepointResponse:
    """(Re)write the TDF record to storage; the answer says where (`blob_path`)."""
    timepoint = await service.find_to_export(session, caller, timepoint_id)
    await tdf.write_blob(generations(request).storage, timepoint)
    return views.response(timepoint, links(request), full=True)


@router.get("/{timepoint_id}/stream")
async def follow_timepoint(
    timepoint_id: TimepointId, request: Request, caller: GatewayCaller, session: SessionDep
) -> StreamingResponse:
    """Replay a generation's events so far and follow the rest, from any replica."""
    domain = generations(request)
    timepoint = await service.find_visible(session, caller, timepoint_id)
    if timepoint.status == "processing" or await domain.bus.has(runs.topic(timepoint_id)):
        return _event_stream(domain, launch.follow(domain, timepoint.id, timepoint.created_at))

    # Finished long ago (its events expired): its ending is all there is to tell.
    async def ending() -> AsyncIterator[GenerationEvent]:
        yield views.done_event(timepoint)

    return _event_stream(domain, ending())


@router.patch("/{timepoint_id}/visibility", response_model=TimepointResponse)
async def change_visibility(
    timepoint_id: TimepointId,
    body: VisibilityUpdate,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> TimepointResponse:
    timepoint = await service.set_visibility(session, caller, timepoint_id, body.visibility)
    return views.response(timepoint, links(request), full=True)


@router.delete("/{timepoint_id}", response_model=Deleted)
async def delete_timepoint(
    timepoint_id: TimepointId,
    caller: GatewayCaller,
    session: SessionDep,
    permanent: bool = False,
) -> Deleted:
    await service.delete(session, caller, timepoint_id, permanent=permanent)
    kind = "permanently deleted" if permanent else "soft-deleted"
    return Deleted(id=timepoint_id, deleted=True, message=f"Timepoint {timepoint_id} {kind}")


@mine.get("/timepoints", response_model=TimepointSummaryPage)
async def my_timepoints(
    caller: UserCaller,
    session: SessionDep,
    page: Page = 1,
    page_size: PageSize = 20,
    status: StatusFilter = None,
) -> TimepointSummaryPage:
    rows, total = await service.list_own(
        session, caller, page=page, page_size=page_size, status=status
    )
    return TimepointSummaryPage(
        items=[views.summary(row) for row in rows], total=total, page=page, page_size=page_size
    )
