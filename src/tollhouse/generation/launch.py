"""Starting a generation: the one way every entry point (HTTP routes, MCP tools) begins one.

In order, before anything is charged: a provider is configured (503), the request and its
model policy are valid (422), the callback URL is allowed (400); then the preset's price is
held (402 when short), the row is committed, and the run task starts (it owns the hold).
"""

from __future__ import annotations

import asyncio
import uuid

from fastapi import Request

from tollhouse.generation import runs, service
from tollhouse.generation.callbacks import validate_callback_url
from tollhouse.generation.runs import Generations, Job
from tollhouse.generation.schemas import GenerateRequest
from tollhouse.identity.caller import Caller
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
    )
    return job, domain.start(job)
