"""/api/v1/entities, /api/v1/content, /api/v1/internal/entities (flash-contract §1.7)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tollhouse.db.session import SessionDep
from tollhouse.generation import content, entities
from tollhouse.generation.errors import TaskNotFound
from tollhouse.generation.launch import generations
from tollhouse.generation.routes import links
from tollhouse.generation.schemas import EntitySearch, RegroundRequest, RegroundTask
from tollhouse.identity.caller import GatewayCaller, ServiceCaller
from tollhouse.kit.clock import utcnow
from tollhouse.kit.tasks import BackgroundTask, TaskRunner
from tollhouse.upstreams.clockchain_client import ClockchainUnavailable, clockchain_client

entity_routes = APIRouter(prefix="/api/v1/entities", tags=["entities"])
content_routes = APIRouter(prefix="/api/v1/content", tags=["content"])
internal = APIRouter(prefix="/api/v1/internal/entities", tags=["internal"])

Limit = Annotated[int, Query(ge=1, le=50)]


@entity_routes.get("/search", response_model=EntitySearch)
async def search_entities(
    request: Request,
    caller: GatewayCaller,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    entity_type: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> EntitySearch:
    """Clockchain figures; an empty list (not an error) when the clockchain is off or fails."""
    hits = await entities.search(
        clockchain_client(request),
        q,
        entity_type=entity_type,
        limit=limit,
        user_id=str(caller.user.id) if caller.user else None,
    )
    return EntitySearch(results=hits, query=q, total=len(hits))


@content_routes.get("/today")
async def today(
    request: Request, caller: GatewayCaller, session: SessionDep, limit: Limit = 20
) -> dict[str, Any]:
    items = await content.today(
        session,
        caller.project_id,
        links(request),
        clockchain_client(request),
        utcnow().date(),
        limit,
    )
    return {"items": items}


@content_routes.get("/weekly-prompt")
async def weekly_prompt(
    request: Request, caller: GatewayCaller, session: SessionDep
) -> dict[str, Any]:
    return await content.weekly_prompt(
        session, caller.project_id, clockchain_client(request), utcnow().date()
    )


@content_routes.get("/featured")
async def featured(
    request: Request, caller: GatewayCaller, session: SessionDep, limit: Limit = 12
) -> dict[str, Any]:
    return {"items": await content.featured(session, caller.project_id, links(request), limit)}


def _view(task: BackgroundTask) -> RegroundTask:
    result = task.result or {}
    return RegroundTask(
        task_id=task.id,
        entity_id=task.subject,
        status=task.status,
        error=task.error,
        grounding_model=result.get("grounding_model"),
        grounded_at=result.get("grounded_at"),
        confidence=result.get("confidence"),
    )


@internal.post("/{entity_id}/reground", response_model=RegroundTask, status_code=202)
async def reground(
    entity_id: str,
    body: RegroundRequest,
    request: Request,
    caller: ServiceCaller,
    session: SessionDep,
) -> RegroundTask:
    """Queue a re-grounding of the figure; poll its status by task id."""
    domain = generations(request)
    domain.require_provider()
    clockchain = clockchain_client(request)
    if clockchain is None:
        raise ClockchainUnavailable("Re-grounding needs the clockchain (CLOCKCHAIN_SERVICE_URL).")
    task = domain.tasks.submit(
        session,
        project_id=caller.project_id,
        kind=entities.REGROUND,
        subject=entity_id,
        prefix=entities.REGROUND_PREFIX,
    )
    await session.commit()
    await domain.tasks.start(
        task, {"entity_id": entity_id, "deep": body.deep, "x_handle": body.x_handle}
    )
    return _view(task)


@internal.get("/{entity_id}/reground/{task_id}", response_model=RegroundTask)
async def reground_status(
    entity_id: str, task_id: str, caller: ServiceCaller, session: SessionDep
) -> RegroundTask:
    task = await TaskRunner.find(session, caller.project_id, entities.REGROUND, task_id)
    if task is None or task.subject != entity_id:
        raise TaskNotFound()
    return _view(task)
