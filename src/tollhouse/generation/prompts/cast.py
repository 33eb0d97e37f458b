"""The whole cast in one call: the fallback when identification fails."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts import bios, characters
from tollhouse.generation.prompts._shared import stage_sections

if TYPE_CHECKING:
    from tollhouse.generation.agents.stage import Stage

# Both tasks at once: who is present (the identification rules), then each one's profile.
SYSTEM = f"""{characters.SYSTEM}

Then, for every person you list, write a full profile as follows.

{bios.SYSTEM}"""


def user_prompt(stage: Stage) -> str:
    return stage_sections(stage)
