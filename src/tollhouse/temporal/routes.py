"""/api/v1/temporal: step a timepoint forward or back in time (JSON or SSE), and its chain.

`temporal_jump` is held before the new scene's run starts (402 when short); the run
captures it when the scene completes and releases it on every other ending. A failed scene
is 502 `jump_failed`, a run past GENERATION_TIMEOUT_SECONDS 504.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from tollhouse.db.session import SessionDep
from tollhouse.generation.routes import follow_new_run, generations
from tollhouse.identity.caller import GatewayCaller
from tollhouse.temporal import service
from tollhouse.temporal.schemas import Direction, JumpRequest, JumpResponse, SequenceResponse

router = APIRouter(prefix="/api/v1/temporal", tags=["temporal"])

_WORDS = {"next": "forward", "prior": "backward"}


async def _jump(
    timepoint_id: uuid.UUID,
    body: JumpRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
    direction: Direction,
) -> JumpResponse:
    jump = await service.jump(
        request,
        generations(request),
        caller,
        session,
        timepoint_id,
        direction,
        body.units,
        body.unit,
    )
    await service.landed(jump)
    return JumpResponse(
        source_id=jump.source_id,
        target_id=jump.job.timepoint_id,
        source_year=jump.source_year,
        target_year=jump.target.year,
        direction=direction,
        units=body.units,
        unit=body.unit,
        message=f"Generated moment {body.units} {body.unit}(s) {_WORDS[direction]}",
    )


async def _jump_stream(
    timepoint_id: uuid.UUID,
    body: JumpRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
    direction: Direction,
) -> StreamingResponse:
    domain = generations(request)
    jump = await service.jump(
        request, domain, caller, session, timepoint_id, direction, body.units, body.unit
    )
    return follow_new_run(domain, jump.job.timepoint_id)


@router.post("/{timepoint_id}/next", response_model=JumpResponse)
async def next_moment(
    timepoint_id: uuid.UUID,
    body: JumpRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> JumpResponse:
    """The same place `units` `unit`s later, carrying the scene forward (2 credits)."""
    return await _jump(timepoint_id, body, request, caller, session, "next")


@router.post("/{timepoint_id}/prior", response_model=JumpResponse)
async def prior_moment(
    timepoint_id: uuid.UUID,
    body: JumpRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> JumpResponse:
    """The same place `units` `unit`s earlier (2 credits)."""
    return await _jump(timepoint_id, body, request, caller, session, "prior")


@router.post("/{timepoint_id}/next/stream")
async def next_moment_stream(
    timepoint_id: uuid.UUID,
    body: JumpRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> StreamingResponse:
    """The new scene's generation frames, as `POST /timepoints/generate/stream` sends them."""
    return await _jump_stream(timepoint_id, body, request, caller, session, "next")


@router.post("/{timepoint_id}/prior/stream")
async def prior_moment_stream(
    timepoint_id: uuid.UUID,
    body: JumpRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> StreamingResponse:
    return await _jump_stream(timepoint_id, body, request, caller, session, "prior")


@router.get("/{timepoint_id}/sequence", response_model=SequenceResponse)
async def sequence(
    timepoint_id: uuid.UUID,
    caller: GatewayCaller,
    session: SessionDep,
    direction: Annotated[Literal["prior", "next", "both"], Query()] = "both",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SequenceResponse:
    return await service.sequence(session, caller, timepoint_id, direction, limit)
