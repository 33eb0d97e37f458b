"""Character bios: one call per person, all in parallel (RunLLM caps calls in flight)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from tollhouse.generation.agents.characters import CharacterStub, Role
from tollhouse.generation.agents.graph import CharacterGraph
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import bios as prompt


class CharacterBio(BaseModel):
    """A character as the /characters route and the interactions serve it."""

    name: str
    role: Role
    speaks_in_scene: bool
    system_prompt: str
    dialog_context: str
    personality: str
    speaking_style: str
    emotional_state: str
    historical_note: str = ""


async def write_bio(
    llm: RunLLM,
    stage: Stage,
    person: CharacterStub,
    cast: list[CharacterStub],
    graph: CharacterGraph | None,
) -> CharacterBio:
    bio = await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(stage, person, cast, graph), CharacterBio
    )
    # Identification decided who is who; a bio may not rename or recast anyone.
    return bio.model_copy(
        update={"name": person.name, "role": person.role, "speaks_in_scene": person.speaks_in_scene}
    )


async def write_bios(
    llm: RunLLM, stage: Stage, cast: list[CharacterStub], graph: CharacterGraph | None
) -> list[CharacterBio]:
    """All bios at once; the first failure cancels the rest (they would be wasted calls)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(write_bio(llm, stage, p, cast, graph)) for p in cast]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the step reports one readable error
    return [task.result() for task in tasks]
