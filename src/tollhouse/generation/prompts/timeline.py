"""Timeline: pin the moment to a date, a time of day and a place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import HONESTY_RULE, compose, section

if TYPE_CHECKING:
    from tollhouse.generation.agents.grounding import Grounding

SYSTEM = f"""You place a historical moment precisely in time and space. Give:
- year (negative for BCE, e.g. -44 for 44 BCE; there is no year 0), month (1-12) and day \
only as far as they are known;
- date_precision: day, month, year, decade or century - the precision the record supports;
- season and time_of_day as they were at that place (southern-hemisphere seasons differ);
- era: the period as historians name it (e.g. "Late Roman Republic", "Space Race");
- location: the specific site, then the wider place as it was called then;
- historical_context: two or three sentences on what led to this moment.
{HONESTY_RULE} If the day is unknown, leave month or day empty and lower date_precision; an \
honest "year" beats an invented day. When research notes are given, they win over memory."""


def user_prompt(query: str, grounding: Grounding | None) -> str:
    return compose(f"Moment: {query}", section("Research notes", grounding))
