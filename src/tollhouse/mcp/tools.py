"""The MCP tools: each one small function over a domain's service, authenticated as the
caller and charged through the same holds as the HTTP routes.

To add a tool, write one function here taking its arguments and a `Context`, resolve the
caller with `toolkit.call(ctx)`, call the domain's service (or flow, like
`interactions.turns`), and append it to `TOOLS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

import pydantic
from mcp.server.fastmcp import Context
from mcp.types import ToolAnnotations

from tollhouse.generation import launch, service, views
from tollhouse.generation.routes import links
from tollhouse.generation.schemas import GenerateRequest
from tollhouse.identity.errors import AuthenticationRequired
from tollhouse.interactions import turns
from tollhouse.interactions.schemas import ChatRequest, ChatResponse
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import ValidationFailed
from tollhouse.ledger import service as ledger
from tollhouse.mcp.toolkit import ToolCall, call
from tollhouse.temporal import service as temporal
from tollhouse.temporal.moment import Unit
from tollhouse.temporal.schemas import JumpRequest

Tool = Callable[..., Awaitable[dict[str, Any]]]
M = TypeVar("M", bound=pydantic.BaseModel)


async def tp_flash_generate(
    query: str,
    ctx: Context[Any, Any, Any],
    generate_image: bool = False,
    preset: str | None = None,
    text_model: str | None = None,
    image_model: str | None = None,
    visibility: Literal["public", "private"] = "public",
    model_policy: Literal["permissive"] | None = None,
    entity_ids: list[str] | None = None,
    request_context: dict[str, Any] | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """Generate a historical scene (a timepoint) from a moment in time, e.g. "Apollo 11
    landing, July 1969". Costs the preset's credits, charged once when the scene completes
    (refunded if it fails). With `wait` (default) it reports progress while the scene is made
    and answers when it is done; without, it answers at once with the id to read later."""
    tool = await call(ctx)
    body = _arguments(
        GenerateRequest,
        query=query,
        generate_image=generate_image,
        preset=preset,
        text_model=text_model,
        image_model=image_model,
        visibility=visibility,
        model_policy=model_policy,
        entity_ids=entity_ids or [],
        request_context=request_context,
    )
    started = utcnow()
    async with tool.session() as session:
        job, _ = await launch.begin(body, tool.request, tool.caller, session)
    timepoint_id = job.timepoint_id
    if wait:
        await _progress(tool, ctx, timepoint_id, started)
    async with tool.session() as session:
        timepoint = await service.find(session, tool.caller, timepoint_id)
        answer = views.response(timepoint, links(tool.request), request_context=request_context)
    return {
        **answer.model_dump(mode="json"),
        "owner_id": str(timepoint.user_id) if timepoint.user_id else None,
        "status_url": str(tool.request.base_url).rstrip("/") + f"/api/v1/timepoints/{timepoint_id}",
        "preset": job.preset_label,
        "generate_image": generate_image,
    }


async def tp_get_timepoint(
    timepoint_id: str, ctx: Context[Any, Any, Any], full: bool = True
) -> dict[str, Any]:
    """Read one timepoint by id: time, place, scene, characters, dialog, image link (private
    timepoints only for their owner)."""
    tool = await call(ctx)
    async with tool.session() as session:
        timepoint = await service.find_visible(session, tool.caller, _uuid(timepoint_id))
        return views.response(timepoint, links(tool.request), full=full).model_dump(mode="json")


async def tp_list_my_timepoints(
    ctx: Context[Any, Any, Any],
    page: int = 1,
    page_size: int = 20,
    status: Literal["processing", "completed", "failed"] | None = None,
) -> dict[str, Any]:
    """List the timepoints you generated, newest first."""
    tool = await call(ctx)
    if tool.caller.user is None:
        raise AuthenticationRequired("Listing your timepoints needs a user's credentials.")
    if page < 1 or not 1 <= page_size <= 100:
        raise ValidationFailed("page must be ≥ 1 and page_size between 1 and 100.")
    async with tool.session() as session:
        rows, total = await service.list_own(
            session, tool.caller, page=page, page_size=page_size, status=status
        )
        items = [views.summary(row).model_dump(mode="json") for row in rows]
    return {"items": items, "total": total, "page": page, "page_size": page_size}


async def tp_get_balance(ctx: Context[Any, Any, Any]) -> dict[str, Any]:
    """Your credit balance, and what you have earned and spent."""
    tool = await call(ctx)
    if tool.caller.user is None:
        raise AuthenticationRequired("A balance belongs to a user: use a user's credentials.")
    async with tool.session() as session:
        account = await ledger.ensure_account(session, tool.caller.user)
        return {
            "balance": account.balance,
            "lifetime_earned": account.lifetime_earned,
            "lifetime_spent": account.lifetime_spent,
        }


async def tp_chat_with_character(
    timepoint_id: str,
    character: str,
    message: str,
    ctx: Context[Any, Any, Any],
    session_id: str | None = None,
) -> dict[str, Any]:
    """Talk to a character of a completed scene, who answers in their own voice from their
    bio, the date, the place and the conversation so far. Costs `chat` credits (1), charged
    when the reply arrives (refunded on failure). Pass the returned `session_id` back to
    continue the same conversation."""
    tool = await call(ctx)
    body = _arguments(
        ChatRequest, character=character, message=message, session_id=session_id, save_session=True
    )
    async with tool.session() as session:
        turn, charge, events, deliver = await turns.Turn.start(
            "chat", _uuid(timepoint_id), body, tool.request, tool.caller, session, stream=False
        )
        reply: ChatResponse = await turn.answer(charge, events, deliver)
    return reply.model_dump(mode="json")


async def tp_jump_in_time(
    timepoint_id: str,
    direction: Literal["next", "prior"],
    ctx: Context[Any, Any, Any],
    units: int = 1,
    unit: Unit = "day",
) -> dict[str, Any]:
    """Make the same place a while later (`next`) or earlier (`prior`): the people who would
    still be there, older or younger, and what just happened. Costs `temporal_jump` credits
    (2), charged when the new scene completes; reports progress while it is made."""
    tool = await call(ctx)
    body = _arguments(JumpRequest, units=units, unit=unit)
    started = utcnow()
    domain = launch.generations(tool.request)
    async with tool.session() as session:
        jump = await temporal.jump(
            tool.request,
            domain,
            tool.caller,
            session,
            _uuid(timepoint_id),
            direction,
            body.units,
            body.unit,
        )
    await _progress(tool, ctx, jump.job.timepoint_id, started)
    await temporal.landed(jump)
    async with tool.session() as session:
        timepoint = await service.find(session, tool.caller, jump.job.timepoint_id)
        answer = views.response(timepoint, links(tool.request))
    return {**answer.model_dump(mode="json"), "source_id": str(jump.source_id)}


async def _progress(
    tool: ToolCall, ctx: Context[Any, Any, Any], timepoint_id: uuid.UUID, started: datetime
) -> None:
    """Report a run's steps as progress notifications until it ends."""
    domain = launch.generations(tool.request)
    async for event in launch.follow(domain, timepoint_id, started):
        await ctx.report_progress(event.progress, 100, f"{event.event}: {event.step}")
        if event.terminal:
            break


def _arguments(model: type[M], **values: Any) -> M:
    """The tool's arguments as the HTTP route's body model (the same rules, 422 alike)."""
    try:
        return model(**values)
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            "The tool's arguments are invalid.",
            detail=exc.errors(include_url=False, include_context=False),
        ) from exc


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ValidationFailed(f"{value!r} is not a timepoint id.") from exc


READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

# name → (function, annotations). Order is the order clients list them in.
TOOLS: dict[str, tuple[Tool, ToolAnnotations | None]] = {
    "tp_flash_generate": (tp_flash_generate, ToolAnnotations(openWorldHint=False)),
    "tp_get_timepoint": (tp_get_timepoint, READ_ONLY),
    "tp_list_my_timepoints": (tp_list_my_timepoints, READ_ONLY),
    "tp_get_balance": (tp_get_balance, READ_ONLY),
    "tp_chat_with_character": (tp_chat_with_character, ToolAnnotations(openWorldHint=False)),
    "tp_jump_in_time": (tp_jump_in_time, ToolAnnotations(openWorldHint=False)),
}
