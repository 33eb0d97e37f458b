"""Scene: the physical world of the moment, as a set designer would brief it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import PERIOD_RULE, compose, section

if TYPE_CHECKING:
    from tollhouse.generation.agents.grounding import Grounding
    from tollhouse.generation.agents.timeline import Timeline

SYSTEM = f"""You design the setting of one historical moment for a film still. Describe the \
place at that exact date and time of day: setting (the space, its size and layout), \
architecture or terrain, atmosphere (the mood in the air), weather and lighting (source, \
direction, colour), sensory_details (sounds, smells, textures, temperature), period_objects \
(things in view, each correct for the date), a colour palette, and notable_absences - \
familiar things a modern viewer might expect that did not exist yet.
{PERIOD_RULE} Write for someone who must build the set: concrete nouns, no adjectives piled \
on adjectives."""


def user_prompt(query: str, timeline: Timeline, grounding: Grounding | None) -> str:
    return compose(
        f"Moment: {query}",
        section("When and where", timeline),
        section("Research notes", grounding),
    )
