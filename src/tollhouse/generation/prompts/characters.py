"""Character identification: who is in the frame at this moment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import HONESTY_RULE, stage_sections

if TYPE_CHECKING:
    from tollhouse.generation.agents.stage import Stage

MAX_CHARACTERS = 6

SYSTEM = f"""You cast one historical moment. List the people present in the scene, at most \
{MAX_CHARACTERS}: the figures the moment is about first, then the people physically there \
whose presence makes it feel real (an aide, a guard, a radio operator). For each give name, \
role (primary: the moment turns on them; secondary: present and involved; background: seen, \
seldom heard), speaks_in_scene, and a one-line description of who they are here.
Use real names for real people. For unnamed people use a descriptive name ("Flight \
controller at the CAPCOM desk"), never an invented full name passed off as historical. \
{HONESTY_RULE} Everyone listed must plausibly have been there at that exact time."""


def user_prompt(stage: Stage) -> str:
    return stage_sections(stage)
