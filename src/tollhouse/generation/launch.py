"""Starting a generation: the one way every entry point (HTTP routes, MCP tools) begins one.

In order, before anything is charged: a provider is configured (503), the request and its
model policy are valid (422), the callback URL is allowed (400); then the preset's price is
held (402 when short), the row is committed, and the run is enqueued (its job owns the hold).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation import runs, service, views
from tollhouse.generation.callbacks import validate_callback_url
from tollhouse.generation.events import GenerationEvent
from tollhouse.generation.models import Timepoint
from tollhouse.generation.runs import Generations, Job
from tollhouse.generation.schemas import GenerateRequest
from tollhouse.identity.caller import Caller
from tollhouse.kit.clock import utcnow
from tollhouse.ledger.charging import hold_charge
from tollhouse.ledger.costs import generation_cost_key


def generations(request: Request) -> Generations:
    value: Generations = request.app.state.generation
    return value


async def begin(
    body: GenerateRequest,
    request: Request,
    caller: Caller,
    session: AsyncSession,
    *,
    callback_url: str | None = None,
) -> tuple[Job, asyncio.Task[runs.Outcome]]:
    domain = generations(request)
    domain.require_provider()
    plan = domain.plan(body)
    if callback_url is not None:
        await validate_callback_url(
            callback_url, allow_private=domain.settings.private_urls_allowed
        )
    timepoint_id = uuid.uuid4()
    preset = plan.preset.name
    charge = await hold_charge(
        request,
        caller,
        session,
        generation_cost_key(preset),
        "generation",
        reference_id=str(timepoint_id),
        description=f"Generate ({preset}): {body.query[:60]}",
        ttl=domain.hold_ttl,
    )
    session.add(
        service.new_timepoint(
            caller,
            timepoint_id,
            body.query,
            preset,
            visibility=body.visibility,
            generate_image=body.generate_image,
        )
    )
    # Committed before the run starts: its task saves the row in a session of its own.
    await session.commit()
    job = Job(
        timepoint_id=timepoint_id,
        request=plan,
        charge=charge,
        preset_label=body.preset or preset,
        callback_url=callback_url,
        request_context=body.request_context,
        write_blob=body.write_blob,
    )
    return job, await domain.start(job)


# A follower waits at most this long past the latest a run can end (its timeout) before it
# concludes the run's process went away and answers from the row instead.
FOLLOW_GRACE_SECONDS = 30.0


async def follow(
    domain: Generations, timepoint_id: uuid.UUID, created_at: datetime
) -> AsyncIterator[GenerationEvent]:
    """The run's events (replayed, then live) up to its terminal one; when none comes in time
    (the process running it died), what the row says instead."""
    limit = timedelta(seconds=domain.settings.generation_timeout_seconds + FOLLOW_GRACE_SECONDS)
    events = domain.bus.follow(runs.topic(timepoint_id))
    try:
        while (remaining := (created_at + limit - utcnow()).total_seconds()) > 0:
            try:
                event = await asyncio.wait_for(anext(events), remaining)
            except (StopAsyncIteration, TimeoutError):
                break
            yield event
            if event.terminal:
                return
    finally:
        await events.aclose()
    async with domain.database.session() as session:
        row = await session.get(Timepoint, timepoint_id)
    if row is not None and row.status != "processing":
        yield views.done_event(row)
    else:
        message = "The generation stopped without finishing: the server running it went away."
        yield GenerationEvent("error", "interrupted", None, 0, message)
