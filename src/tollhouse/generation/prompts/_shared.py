"""Rules several agents state the same way, and how earlier results are shown to the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from tollhouse.generation.agents.bios import CharacterBio
    from tollhouse.generation.agents.stage import Stage

PERIOD_RULE = (
    "Stay inside the moment. Mention no object, material, word, idiom, title, institution or "
    "idea that did not exist there and then; when unsure whether something existed yet, leave "
    "it out. Prefer concrete period detail (what people wore, held, ate, heard, called things) "
    "over generic description."
)

HONESTY_RULE = (
    "Be honest about what is known. Where the record is silent or disputed, say so in the "
    "fields meant for it rather than inventing precision; never present a guess as a fact."
)

SAFETY_RULE = (
    "Never write sexual content involving minors, and never give usable instructions for "
    "weapons or violence. Depict violence, cruelty and prejudice of the period only as far as "
    "the scene needs, without relish."
)


def section(
    title: str,
    value: BaseModel | Sequence[BaseModel] | str | None,
    *,
    exclude: set[str] | None = None,
) -> str:
    """One labelled block of context (compact JSON); nothing when there is nothing to show."""
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, str):
        body = value
    elif isinstance(value, BaseModel):
        body = value.model_dump_json(exclude_none=True, exclude=exclude)
    else:
        body = "\n".join(item.model_dump_json(exclude_none=True, exclude=exclude) for item in value)
    return f"## {title}\n{body}"


def profiles(title: str, cast: Sequence[CharacterBio]) -> str:
    """The cast as others see them: everything but each one's own role-play instructions."""
    return section(title, cast, exclude={"system_prompt"})


def compose(*blocks: str) -> str:
    """Join the non-empty blocks of a user prompt."""
    return "\n\n".join(block for block in blocks if block)


def stage_sections(stage: Stage) -> str:
    """The moment, its date and place, its setting and the research notes."""
    return compose(
        f"Moment: {stage.query}",
        section("When and where", stage.timeline),
        section("Setting", stage.scene),
        section("Research notes", stage.grounding),
    )


MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def date_words(year: int | None, month: int | None = None, day: int | None = None) -> str:
    """`20 July 1969`, `March 44 BCE`, `1969`: as precise as the date is known."""
    if year is None:
        return "an unknown date"
    when = f"{-year} BCE" if year < 0 else str(year)
    if month is not None and 1 <= month <= 12:
        when = f"{MONTHS[month - 1]} {when}"
        if day is not None:
            when = f"{day} {when}"
    return when
