"""Moment: tension and stakes of the frozen instant."""

from __future__ import annotations

from pydantic import BaseModel

from tollhouse.generation.agents.bios import CharacterBio
from tollhouse.generation.agents.graph import CharacterGraph
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import moment as prompt


class DramaticMoment(BaseModel):
    beat: str
    what_just_happened: str
    what_happens_next: str
    tension: str
    stakes: str
    emotional_tone: str = ""
    focal_action: str = ""
    # What readers of the scene see without the image (the meeting simulator shows these).
    plot_summary: str
    narrative: str


async def choose_moment(
    llm: RunLLM, stage: Stage, cast: list[CharacterBio], graph: CharacterGraph | None
) -> DramaticMoment:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(stage, cast, graph), DramaticMoment
    )
