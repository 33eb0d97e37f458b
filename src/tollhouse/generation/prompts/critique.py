"""Critique: an editor's single pass over the dialog."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import compose, profiles, section, stage_sections

if TYPE_CHECKING:
    from tollhouse.generation.agents.bios import CharacterBio
    from tollhouse.generation.agents.dialog import DialogLine
    from tollhouse.generation.agents.stage import Stage

SYSTEM = """You are a historical script editor reviewing the dialog of one scene. List issues, \
each with the line number (1-based), kind (anachronism, fact, voice, tone, safety) and \
severity. Critical means the scene cannot ship as is: a word, object or idea later than the \
date; a factual error about the event or a person; two characters who sound \
interchangeable; a speaker who knows how history turns out; unsafe content. Everything else \
is minor. Set has_critical only when a critical issue exists, and then write \
revision_instructions: concrete fixes a writer can apply line by line. Do not invent \
problems: a clean scene gets an empty list."""


def user_prompt(stage: Stage, cast: list[CharacterBio], lines: list[DialogLine]) -> str:
    numbered = "\n".join(
        f"{number}. {line.speaker} ({line.tone}): {line.text}"
        for number, line in enumerate(lines, start=1)
    )
    return compose(stage_sections(stage), profiles("Speakers", cast), section("Dialog", numbered))
