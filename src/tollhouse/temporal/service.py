"""Jumps and sequences: the rules of moving through time from a timepoint.

A jump checks everything before charging (a provider, the source visible and completed, a
date precise enough for the unit), holds `temporal_jump`, inserts the new timepoint — with
the source's owner and visibility, linked into its sequence — commits, and starts one
generation run, which captures the hold when the scene completes and releases it on every
other ending (generation/runs.py).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation import planning, runs
from tollhouse.generation import service as generation_service
from tollhouse.generation.errors import GenerationFailed, GenerationTimedOut, TimepointNotFound
from tollhouse.generation.models import Timepoint
from tollhouse.generation.runs import Generations, Job
from tollhouse.generation.schemas import GenerateRequest
from tollhouse.identity.caller import Caller
from tollhouse.ledger.charging import hold_charge
from tollhouse.temporal import carry
from tollhouse.temporal.errors import JumpFailed, NoSourceYear, SourceNotCompleted, SourceNotFound
from tollhouse.temporal.moment import Moment, Unit, step
from tollhouse.temporal.schemas import Direction, SequenceItem, SequenceResponse


@dataclass(frozen=True, slots=True)
class Jump:
    source_id: uuid.UUID
    source_year: int | None
    target: Moment
    job: Job
    task: asyncio.Task[runs.Outcome]


async def _source(session: AsyncSession, caller: Caller, source_id: uuid.UUID) -> Timepoint:
    try:
        source = await generation_service.find_visible(session, caller, source_id)
    except TimepointNotFound:
        raise SourceNotFound() from None
    if source.is_deleted:
        raise SourceNotFound()
    if source.status != "completed":
        raise SourceNotCompleted()
    if source.year is None:
        raise NoSourceYear()
    return source


def _link(source: Timepoint, new: Timepoint, direction: Direction) -> None:
    """One sequence id for both; `next` hangs the new moment under the source, `prior` puts
    it above the source unless the source already has a parent (never overwritten)."""
    if source.sequence_id is None:
        source.sequence_id = str(uuid.uuid4())
    new.sequence_id = source.sequence_id
    if direction == "next":
        new.parent_id = source.id
    elif source.parent_id is None:
        source.parent_id = new.id


async def jump(
    request: Request,
    domain: Generations,
    caller: Caller,
    session: AsyncSession,
    source_id: uuid.UUID,
    direction: Direction,
    units: int,
    unit: Unit,
) -> Jump:
    domain.require_provider()
    source = await _source(session, caller, source_id)
    assert source.year is not None
    forward = direction == "next"
    target = step(
        Moment(source.year, source.month, source.day, source.time_of_day),
        units if forward else -units,
        unit,
    )
    query = carry.query(source, target, units, unit, forward)
    permissive = (source.tdf_payload or {}).get("model_permissiveness") == "permissive"
    plan = planning.plan(
        GenerateRequest(
            query=query,
            preset=source.preset,
            generate_image=source.generate_image,
            model_policy="permissive" if permissive else None,
        ),
        domain.presets,
        domain.settings,
    )
    plan = replace(plan, continuity=carry.continuity(source, target, units, unit, forward))
    new_id = uuid.uuid4()
    charge = await hold_charge(
        request,
        caller,
        session,
        "temporal_jump",
        "temporal",
        reference_id=str(new_id),
        description=f"Temporal {direction}: {units} {unit}(s) from {source.id}",
        ttl=domain.hold_ttl,
    )
    new = generation_service.new_timepoint(
        caller,
        new_id,
        query,
        plan.preset.name,
        visibility=source.visibility,
        generate_image=source.generate_image,
    )
    # The source's, whoever asks: a jump from someone's private scene stays theirs.
    new.user_id, new.visibility = source.user_id, source.visibility
    session.add(new)
    await session.flush()
    _link(source, new, direction)
    source_year = source.year
    await session.commit()
    job = Job(
        timepoint_id=new_id,
        request=plan,
        charge=charge,
        preset_label=plan.preset.name,
        fixed_fields={
            "year": target.year,
            "month": target.month,
            "day": target.day,
            "time_of_day": target.time_of_day,
            "location": source.location,
        },
    )
    return Jump(source_id, source_year, target, job, await domain.start(job))


def _item(timepoint: Timepoint) -> SequenceItem:
    return SequenceItem(id=timepoint.id, year=timepoint.year, slug=timepoint.slug)


async def sequence(
    session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID, direction: str, limit: int
) -> SequenceResponse:
    """The chain around a timepoint, only through moments the caller may see: `prior`
    follows parents upward, `next` the most recently made child, each up to `limit`."""
    center = await generation_service.find_visible(session, caller, timepoint_id)
    seen = {center.id}
    prior: list[SequenceItem] = []
    if direction in ("prior", "both"):
        current = center
        while len(prior) < limit and current.parent_id is not None:
            parent = await generation_service.find(session, caller, current.parent_id)
            if (
                parent.id in seen
                or parent.is_deleted
                or not generation_service.can_see(parent, caller)
            ):
                break
            seen.add(parent.id)
            prior.append(_item(parent))
            current = parent
    following: list[SequenceItem] = []
    if direction in ("next", "both"):
        current = center
        while len(following) < limit:
            child = await generation_service.latest_visible_child(session, caller, current.id)
            if child is None or child.id in seen:
                break
            seen.add(child.id)
            following.append(_item(child))
            current = child
    return SequenceResponse(center=_item(center), prior=prior, next=following)


async def landed(jump: Jump) -> None:
    """Wait for the jump's new scene; its failure as the caller's error. Shielded: a caller
    that goes away does not stop the scene (its run settles the hold either way)."""
    outcome = await asyncio.shield(jump.task)
    if outcome.interrupted == runs.TIMED_OUT:
        raise GenerationTimedOut(outcome.error)
    if outcome.interrupted is not None:
        raise GenerationFailed(outcome.error)
    if outcome.status != "completed":
        raise JumpFailed(detail={"target_id": str(jump.job.timepoint_id), "error": outcome.error})
