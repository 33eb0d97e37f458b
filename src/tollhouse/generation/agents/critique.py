"""Critique: one review pass; critical issues send the dialog back once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tollhouse.generation.agents.bios import CharacterBio
from tollhouse.generation.agents.dialog import DialogLine
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import critique as prompt


class CritiqueIssue(BaseModel):
    line: int
    kind: Literal["anachronism", "fact", "voice", "tone", "safety"]
    severity: Literal["minor", "critical"]
    note: str


class DialogCritique(BaseModel):
    issues: list[CritiqueIssue] = Field(default_factory=list)
    has_critical: bool
    revision_instructions: str = ""


async def critique_dialog(
    llm: RunLLM, stage: Stage, cast: list[CharacterBio], lines: list[DialogLine]
) -> DialogCritique:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(stage, cast, lines), DialogCritique
    )
