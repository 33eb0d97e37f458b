"""Timeline: when and where, at the precision the record supports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tollhouse.generation.agents.grounding import Grounding
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import timeline as prompt


class Timeline(BaseModel):
    # Negative = BCE.
    year: int
    month: int | None = Field(default=None, ge=1, le=12)
    day: int | None = Field(default=None, ge=1, le=31)
    date_precision: Literal["day", "month", "year", "decade", "century"] = "year"
    season: str | None = None
    time_of_day: str | None = None
    era: str
    location: str
    historical_context: str = ""


async def place_in_time(llm: RunLLM, query: str, grounding: Grounding | None) -> Timeline:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(query, grounding), Timeline, max_tokens=1024
    )
