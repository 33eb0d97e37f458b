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
    # What clients score a scene by (flash-contract §4.1 grounding): the record's year and
    # how firmly it supports the moment.
    verified_year: int | None = None
    grounding_confidence: float = Field(ge=0, le=1)


async def ground(llm: RunLLM, query: str, figures: list[str]) -> Grounding:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(query, figures), Grounding, grounded=True
    )
