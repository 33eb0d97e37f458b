"""Character bio: one person, ready to be played."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import (
    HONESTY_RULE,
    PERIOD_RULE,
    compose,
    section,
    stage_sections,
)

if TYPE_CHECKING:
    from tollhouse.generation.agents.characters import CharacterStub
    from tollhouse.generation.agents.graph import CharacterGraph
    from tollhouse.generation.agents.stage import Stage

SYSTEM = f"""You write the profile an actor needs to play one person in a historical moment. \
Fields:
- personality: temperament and values as shown by their record, not flattery.
- speaking_style: how this person sounds and no one else in the scene does - vocabulary \
(technical, plain, formal, regional), sentence rhythm (clipped, rambling, measured), habits \
(jargon, oaths, understatement) and how their rank or status shapes how they address others.
- emotional_state: what they feel at this exact moment and what they are hiding.
- dialog_context: what they know, want and fear right now in the scene.
- historical_note: who they were and what became of them; mark anything uncertain.
- system_prompt: second-person instructions for a model role-playing them ("You are ..."), \
covering voice, knowledge limited to the date, and attitude to the others present.
{PERIOD_RULE} {HONESTY_RULE}"""


def user_prompt(
    stage: Stage, person: CharacterStub, cast: list[CharacterStub], graph: CharacterGraph | None
) -> str:
    others = [member for member in cast if member.name != person.name]
    return compose(
        stage_sections(stage),
        section("Others present", others),
        section("Relationships", graph),
        section("Write the profile of", person),
        "Keep name, role and speaks_in_scene exactly as given.",
    )
