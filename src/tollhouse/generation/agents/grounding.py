"""Grounding: a search-backed fact sheet the later agents must respect."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import grounding as prompt


class GroundedFigure(BaseModel):
    name: str
    role: str
    note: str = ""


class Grounding(BaseModel):
    verified_facts: list[str]
    key_figures: list[GroundedFigure] = Field(default_factory=list)
    date_and_place: str = ""
    uncertainties: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


async def ground(llm: RunLLM, query: str, figures: list[str]) -> Grounding:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(query, figures), Grounding, grounded=True
    )
