"""Character identification: at most six stubs, the cast the later agents flesh out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import characters as prompt

MAX_CHARACTERS = prompt.MAX_CHARACTERS

Role = Literal["primary", "secondary", "background"]


class CharacterStub(BaseModel):
    name: str
    role: Role
    speaks_in_scene: bool
    description: str = ""


class CharacterList(BaseModel):
    characters: list[CharacterStub]


async def identify_characters(llm: RunLLM, stage: Stage) -> list[CharacterStub]:
    cast = await llm.structured(prompt.SYSTEM, prompt.user_prompt(stage), CharacterList)
    if not cast.characters:
        raise ValueError("character identification found nobody in the scene")
    # Models overshoot the limit they were given; the bios fan-out must stay bounded.
    return cast.characters[:MAX_CHARACTERS]
