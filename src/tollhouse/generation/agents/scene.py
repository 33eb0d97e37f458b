"""Scene: setting, atmosphere and the period objects in view."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tollhouse.generation.agents.grounding import Grounding
from tollhouse.generation.agents.timeline import Timeline
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import scene as prompt


class SceneSetting(BaseModel):
    setting: str
    architecture: str = ""
    atmosphere: str
    weather: str = ""
    lighting: str = ""
    sensory_details: list[str] = Field(default_factory=list)
    period_objects: list[str] = Field(default_factory=list)
    color_palette: list[str] = Field(default_factory=list)
    notable_absences: list[str] = Field(default_factory=list)


async def design_scene(
    llm: RunLLM, query: str, timeline: Timeline, grounding: Grounding | None
) -> SceneSetting:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(query, timeline, grounding), SceneSetting
    )
