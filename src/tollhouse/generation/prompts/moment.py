"""Moment: the dramatic beat the scene freezes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import (
    HONESTY_RULE,
    compose,
    profiles,
    section,
    stage_sections,
)

if TYPE_CHECKING:
    from tollhouse.generation.agents.bios import CharacterBio
    from tollhouse.generation.agents.graph import CharacterGraph
    from tollhouse.generation.agents.stage import Stage

SYSTEM = f"""You are a dramaturg choosing the exact beat a historical scene captures - the \
second worth freezing. Give: beat (one sentence: what is happening in this instant), \
what_just_happened, what_happens_next (as the people present expect it, not as history \
turned out - they do not know the ending), tension (what makes the instant charged), stakes \
(what each side stands to gain or lose), emotional_tone, and focal_action (the one physical \
action the eye should land on). Then plot_summary (one or two sentences: the situation as a \
reader needs it) and narrative (a short present-tense paragraph that walks through the \
instant, for someone who cannot see the image). {HONESTY_RULE}"""


def user_prompt(stage: Stage, cast: list[CharacterBio], graph: CharacterGraph | None) -> str:
    return compose(stage_sections(stage), profiles("Cast", cast), section("Relationships", graph))
