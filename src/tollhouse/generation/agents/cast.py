"""The characters step: identification, then the graph, then every bio in parallel."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import BaseModel

from tollhouse.generation.agents.bios import CharacterBio, write_bios
from tollhouse.generation.agents.characters import (
    MAX_CHARACTERS,
    CharacterStub,
    identify_characters,
)
from tollhouse.generation.agents.graph import CharacterGraph, map_relationships
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import cast as prompt

log = structlog.get_logger("tollhouse.generation")


class CharacterSheet(BaseModel):
    characters: list[CharacterBio]


@dataclass(frozen=True, slots=True)
class Cast:
    stubs: list[CharacterStub]
    graph: CharacterGraph | None
    bios: list[CharacterBio]

    @property
    def speakers(self) -> list[CharacterBio]:
        """Who talks in the scene, primary roles first; everyone when nobody is marked."""
        rank = {"primary": 0, "secondary": 1, "background": 2}
        speaking = [bio for bio in self.bios if bio.speaks_in_scene] or self.bios
        return sorted(speaking, key=lambda bio: rank[bio.role])


async def assemble_cast(llm: RunLLM, stage: Stage) -> Cast:
    try:
        stubs = await identify_characters(llm, stage)
    except Exception as exc:  # any failure: the single combined call may still manage
        log.warning("character_identification_failed", error=str(exc), fallback="one call")
        return await _cast_in_one_call(llm, stage)
    try:
        graph: CharacterGraph | None = await map_relationships(llm, stage, stubs)
    except Exception as exc:  # the bios are still worth writing without the graph
        log.warning("character_graph_failed", error=str(exc), fallback="bios without it")
        graph = None
    return Cast(stubs, graph, await write_bios(llm, stage, stubs, graph))


async def _cast_in_one_call(llm: RunLLM, stage: Stage) -> Cast:
    sheet = await llm.structured(prompt.SYSTEM, prompt.user_prompt(stage), CharacterSheet)
    bios = sheet.characters[:MAX_CHARACTERS]
    if not bios:
        raise ValueError("no characters could be identified for this scene")
    stubs = [
        CharacterStub(name=bio.name, role=bio.role, speaks_in_scene=bio.speaks_in_scene)
        for bio in bios
    ]
    return Cast(stubs, None, bios)
