"""Entities (clockchain figures): search, and re-grounding a figure against the record
(flash-contract §1.7). Search degrades to an empty list when the clockchain is off or fails;
re-grounding needs it, and runs as a background task whose status anyone can poll.
"""

from __future__ import annotations

from typing import Any

import structlog

from tollhouse.generation.agents.grounding import ground
from tollhouse.generation.context import RunLLM
from tollhouse.generation.pipeline import StepStats, current_stats
from tollhouse.generation.runs import Generations
from tollhouse.generation.schemas import EntityHit, GenerateRequest
from tollhouse.kit.clock import utcnow
from tollhouse.upstreams.clockchain_client import ClockchainClient, ClockchainUnavailable

log = structlog.get_logger("tollhouse.generation")

REGROUND = "entity_reground"
REGROUND_PREFIX = "rg"


async def search(
    clockchain: ClockchainClient | None,
    query: str,
    *,
    entity_type: str | None,
    limit: int,
    user_id: str | None,
) -> list[EntityHit]:
    if clockchain is None:
        return []
    try:
        found = await clockchain.search_figures(
            query, entity_type=entity_type, limit=limit, user_id=user_id
        )
    except ClockchainUnavailable as exc:
        log.warning("entity_search_failed", error=str(exc))
        return []
    return [
        EntityHit(
            id=str(item["id"]),
            display_name=str(item.get("display_name") or item.get("name") or item["id"]),
            entity_type=item.get("entity_type"),
            score=item.get("score") if isinstance(item.get("score"), int | float) else None,
        )
        for item in found[:limit]
        if item.get("id") is not None
    ]


async def reground(
    domain: Generations,
    clockchain: ClockchainClient,
    entity_id: str,
    *,
    deep: bool,
    x_handle: str | None,
) -> dict[str, Any]:
    """Ground the figure again with the grounding agent (the `hd` preset when deep) and
    write the result back to the clockchain; the task's result is what the status shows."""
    figure = await clockchain.figure(entity_id)
    name = str(figure.get("display_name") or figure.get("name") or entity_id)
    handle = f" (on X: @{x_handle.lstrip('@')})" if x_handle else ""
    query = f"The historical record of {name}{handle}"[:500]
    plan = domain.plan(GenerateRequest(query=query, preset="hd" if deep else None))
    stats = StepStats()
    token = current_stats.set(stats)
    try:
        grounding = await ground(RunLLM(domain.router, plan), query, [name])
    finally:
        current_stats.reset(token)
    grounded_at = utcnow().isoformat()
    result = {
        "grounding_model": stats.model,
        "grounded_at": grounded_at,
        "confidence": grounding.grounding_confidence,
    }
    await clockchain.ground_figure(
        entity_id, {**result, "deep": deep, "grounding": grounding.model_dump(mode="json")}
    )
    return result


def register_reground(domain: Generations, clockchain: ClockchainClient | None) -> None:
    """Re-grounding as a task kind: its payload names the figure and the options, and the
    worker that takes it grounds through its own LLM router and clockchain client. An
    attempt after a dead worker grounds again (writing the figure's grounding twice is
    harmless)."""

    async def work(payload: dict[str, Any]) -> dict[str, Any]:
        if clockchain is None:
            raise ClockchainUnavailable("This worker has no clockchain (CLOCKCHAIN_SERVICE_URL).")
        return await reground(
            domain,
            clockchain,
            payload["entity_id"],
            deep=bool(payload["deep"]),
            x_handle=payload.get("x_handle"),
        )

    settings = domain.settings
    domain.tasks.register(
        REGROUND,
        work,
        timeout_seconds=settings.generation_timeout_seconds,
        attempts=settings.generation_job_attempts,
    )
