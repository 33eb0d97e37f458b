"""Camera: how the still is framed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import PERIOD_RULE, stage_sections

if TYPE_CHECKING:
    from tollhouse.generation.agents.stage import Stage

SYSTEM = f"""You are a cinematographer framing one still of a historical moment. Choose: shot \
(wide, medium, close-up...), angle (eye level, low, high, over-the-shoulder), lens (focal \
length and its effect), composition (where things sit in the frame and why), focal_subject \
(what the eye lands on first), depth_of_field, and lighting_setup that uses only light \
sources present in the setting. Frame for meaning: the choice should say something about \
the moment, not just show it. {PERIOD_RULE}"""


def user_prompt(stage: Stage) -> str:
    return stage_sections(stage)
