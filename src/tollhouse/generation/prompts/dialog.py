"""Dialog: role-play (one speaker, one line per call) or the whole exchange in one call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import (
    PERIOD_RULE,
    SAFETY_RULE,
    compose,
    profiles,
    section,
    stage_sections,
)

if TYPE_CHECKING:
    from tollhouse.generation.agents.bios import CharacterBio
    from tollhouse.generation.agents.dialog import DialogLine
    from tollhouse.generation.agents.moment import DramaticMoment
    from tollhouse.generation.agents.stage import Stage

CORRECTIONS_HEADER = "CRITICAL CORRECTIONS REQUIRED:"
MAX_LINES = 7

_SPOKEN_WORD_RULES = f"""Spoken words only in text: no stage directions, no narration, no \
quotation marks. Lines are short - people under pressure talk in fragments - at most about \
forty words. tone is one or two words (e.g. "clipped", "awed", "bitter"). People in the \
scene do not know how history turns out. {PERIOD_RULE} {SAFETY_RULE}"""

# Appended to the speaker's own role-play prompt (their bio's system_prompt).
LINE_SYSTEM = f"""You are speaking one line in a scene of several people. Answer what was \
just said, or break the silence if nothing was, in your own voice: your vocabulary, rhythm \
and standing towards the others, which must differ from everyone else's. \
{_SPOKEN_WORD_RULES}"""

BATCH_SYSTEM = f"""You write the spoken dialog of one historical moment: at most {MAX_LINES} \
lines that play out the dramatic beat. Each speaker must sound unmistakably like themselves - \
different vocabulary, sentence length and register, shaped by rank and temperament as their \
profiles describe - so that a reader could tell who speaks with the names covered. The lines \
should move: a question gets an answer, tension rises or breaks. {_SPOKEN_WORD_RULES}"""


def _corrections(corrections: str | None) -> str:
    return f"{CORRECTIONS_HEADER} {corrections}" if corrections else ""


def line_prompt(
    stage: Stage,
    moment: DramaticMoment,
    cast: list[CharacterBio],
    lines: list[DialogLine],
    speaker: CharacterBio,
    corrections: str | None,
) -> str:
    so_far = "\n".join(f"{line.speaker}: {line.text}" for line in lines) or "(silence so far)"
    return compose(
        stage_sections(stage),
        section("The beat", moment),
        profiles("Present", cast),
        section("Said so far", so_far),
        f"You are {speaker.name}. Speak your next line.",
        _corrections(corrections),
    )


def batch_prompt(
    stage: Stage, moment: DramaticMoment, cast: list[CharacterBio], corrections: str | None
) -> str:
    speakers = ", ".join(bio.name for bio in cast)
    return compose(
        stage_sections(stage),
        section("The beat", moment),
        profiles("Speakers", cast),
        f"Write the dialog. Speakers may only be: {speakers}.",
        _corrections(corrections),
    )
