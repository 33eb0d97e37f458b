"""Dialog: at most seven lines, by role-play (a call per line) or in one batch call."""

from __future__ import annotations

from pydantic import BaseModel

from tollhouse.generation.agents.bios import CharacterBio
from tollhouse.generation.agents.moment import DramaticMoment
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import dialog as prompt

MAX_LINES = prompt.MAX_LINES


class DialogLine(BaseModel):
    speaker: str
    text: str
    tone: str = ""


class SpokenLine(BaseModel):
    """One role-played line: the speaker is ours to choose, not the model's."""

    text: str
    tone: str = ""


class DialogScript(BaseModel):
    lines: list[DialogLine]


async def role_play_dialog(
    llm: RunLLM,
    stage: Stage,
    moment: DramaticMoment,
    speakers: list[CharacterBio],
    corrections: str | None = None,
) -> list[DialogLine]:
    """Each line written by its speaker in character, seeing every line before it."""
    lines: list[DialogLine] = []
    for turn in range(MAX_LINES):
        speaker = speakers[turn % len(speakers)]
        spoken = await llm.structured(
            f"{speaker.system_prompt}\n\n{prompt.LINE_SYSTEM}",
            prompt.line_prompt(stage, moment, speakers, lines, speaker, corrections),
            SpokenLine,
            max_tokens=256,
        )
        lines.append(DialogLine(speaker=speaker.name, text=spoken.text, tone=spoken.tone))
    return lines


async def batch_dialog(
    llm: RunLLM,
    stage: Stage,
    moment: DramaticMoment,
    speakers: list[CharacterBio],
    corrections: str | None = None,
) -> list[DialogLine]:
    script = await llm.structured(
        prompt.BATCH_SYSTEM,
        prompt.batch_prompt(stage, moment, speakers, corrections),
        DialogScript,
    )
    return script.lines[:MAX_LINES]
