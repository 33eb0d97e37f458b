"""/api/v1/temporal: step a timepoint forward or back in time (JSON or SSE), and its chain.

`temporal_jump` is held before the new scene's run starts (402 when short); the run
captures it when the scene completes and releases it on every other ending. A failed scene
is 502 `jump_failed`, a run past GENERATION_TIMEOUT_SECONDS 504.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from tollhouse.db.session import SessionDep
from tollhouse.generation.routes import follow_new_run, generations
from tollhouse.identity.caller import GatewayCaller
from tollhouse.temporal import service
from tollhouse.temporal.schemas import Direction, JumpRequest, JumpResponse, SequenceResponse

router = APIRouter(prefix="/api/v1/temporal", tags=["temporal"])

_WORDS = {"next": "forward", "prior": "backward"}


def _jump_endpoint(
    direction: Direction, doc: str | None, *, stream: bool
) -> Callable[..., Awaitable[Any]]:
    """The handler of `POST /{timepoint_id}/<direction>` (the new moment once it is made) or
    of its `/stream` twin (the new scene's generation frames): the same checks and hold."""

    async def endpoint(
        timepoint_id: uuid.UUID,
        body: JumpRequest,
        request: Request,
        caller: GatewayCaller,
        session: SessionDep,
    ) -> Any:
        domain = generations(request)
        jump = await service.jump(
            request, domain, caller, session, timepoint_id, direction, body.units, body.unit
        )
        if stream:
            return follow_new_run(domain, jump.job.timepoint_id)
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

    endpoint.__doc__ = doc  # FastAPI's description of the operation
    return endpoint


# (direction, operation name, the JSON route's description, the stream's)
_JUMPS: tuple[tuple[Direction, str, str, str | None], ...] = (
    (
        "next",
        "next_moment",
        "The same place `units` `unit`s later, carrying the scene forward (2 credits).",
        "The new scene's generation frames, as `POST /timepoints/generate/stream` sends them.",
    ),
    ("prior", "prior_moment", "The same place `units` `unit`s earlier (2 credits).", None),
)
for _direction, _name, _doc, _ in _JUMPS:
    router.add_api_route(
        f"/{{timepoint_id}}/{_direction}",
        _jump_endpoint(_direction, _doc, stream=False),
        methods=["POST"],
        name=_name,
        response_model=JumpResponse,
    )
for _direction, _name, _, _stream_doc in _JUMPS:
    router.add_api_route(
        f"/{{timepoint_id}}/{_direction}/stream",
        _jump_endpoint(_direction, _stream_doc, stream=True),
        methods=["POST"],
        name=f"{_name}_stream",
        response_model=None,
    )


@router.get("/{timepoint_id}/sequence", response_model=SequenceResponse)
async def sequence(
    timepoint_id: uuid.UUID,
    caller: GatewayCaller,
    session: SessionDep,
    direction: Annotated[Literal["prior", "next", "both"], Query()] = "both",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SequenceResponse:
    return await service.sequence(session, caller, timepoint_id, direction, limit)
