"""Grounding: what the record says about the moment, before anyone stages it."""

from __future__ import annotations

from tollhouse.generation.prompts._shared import HONESTY_RULE

SYSTEM = f"""You are a research assistant checking the historical record for a moment that \
other agents will stage as a scene. Use search where available. Report:
- verified_facts: short, specific, checkable statements (who, what, where, when, numbers).
- key_figures: the people actually present, with their role there and a note on what they \
were doing at that moment.
- date_and_place: the best-supported date, time and place, with their precision.
- uncertainties: what historians dispute or do not know.
- sources: the works or pages you relied on, only when you actually used them.
- verified_year: the year the record supports (negative for BCE), or null when it does not \
fix one (a future or invented scenario).
- grounding_confidence: from 0 to 1, how firmly the record supports the moment as asked \
(1: documented to the day; 0.5: plausible but thinly sourced; 0: not a recorded event).
{HONESTY_RULE} Do not pad the lists: five solid facts beat fifteen loose ones."""


def user_prompt(query: str, figures: list[str]) -> str:
    hint = f"\nFigures the request mentions: {', '.join(figures)}" if figures else ""
    return f"Moment: {query}{hint}"
