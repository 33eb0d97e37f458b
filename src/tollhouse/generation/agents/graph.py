"""Character graph: relationships, factions and power dynamics among the cast."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tollhouse.generation.agents.characters import CharacterStub
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import graph as prompt


class Relationship(BaseModel):
    source: str
    target: str
    kind: str
    note: str = ""


class Faction(BaseModel):
    name: str
    members: list[str]
    aim: str = ""


class CharacterGraph(BaseModel):
    relationships: list[Relationship] = Field(default_factory=list)
    factions: list[Faction] = Field(default_factory=list)
    power_dynamics: str = ""


async def map_relationships(llm: RunLLM, stage: Stage, cast: list[CharacterStub]) -> CharacterGraph:
    return await llm.structured(prompt.SYSTEM, prompt.user_prompt(stage, cast), CharacterGraph)
