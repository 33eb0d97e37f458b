"""Character graph: how the people in the scene stand towards each other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import HONESTY_RULE, compose, section, stage_sections

if TYPE_CHECKING:
    from tollhouse.generation.agents.characters import CharacterStub
    from tollhouse.generation.agents.stage import Stage

SYSTEM = f"""You map the relationships among the people in one historical moment, as they \
stood at that moment (not later). Give relationships (source, target, kind such as \
commander/subordinate, rivals, spouses, strangers, and a note on the tension or trust \
between them), factions (groups with a shared aim, their members and that aim), and \
power_dynamics: who holds authority, who holds information, who is exposed. Use only the \
names in the cast. {HONESTY_RULE}"""


def user_prompt(stage: Stage, cast: list[CharacterStub]) -> str:
    return compose(stage_sections(stage), section("Cast", cast))
