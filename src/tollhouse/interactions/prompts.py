"""Prompts for talking to a scene's people: each speaks in the voice their bio gives them.

A character's system prompt carries their bio (personality, speaking style, voice notes,
emotional state, historical note) and the moment (date, place, era, setting, what is
happening); the user prompt carries the conversation so far and what is asked now.
"""

from __future__ import annotations

from collections.abc import Sequence

from tollhouse.generation.prompts._shared import (
    PERIOD_RULE,
    SAFETY_RULE,
    compose,
    date_words,
)
from tollhouse.interactions.scene import Persona, Scene

IN_CHARACTER_RULE = f"""Stay in character whatever you are asked: you are this person, at \
this moment, and know only what they could know then (nothing of how history turns out). \
Answer in the first person, in your own words and rhythm, without stage directions or \
narration. If asked about something you could not know, react as this person would. \
{PERIOD_RULE} {SAFETY_RULE}"""

REPLY_FIELDS = """Answer as JSON: `response` is your spoken answer; `emotional_tone` one or two \
words for how you say it (e.g. "wary", "elated")."""

ANSWER_FIELDS = """Answer as JSON: `response` is your spoken answer; `sentiment` one of \
positive, negative, neutral, mixed (your attitude to the question); `key_points` two to four \
short phrases summing up what you said; `emotional_tone` one or two words."""


def _moment(scene: Scene) -> str:
    when = date_words(scene.year, scene.month, scene.day)
    if scene.time_of_day:
        when = f"{when}, {scene.time_of_day}"
    lines = [
        f"When: {when}" + (f" ({scene.era})" if scene.era else ""),
        f"Where: {scene.location or 'unknown'}",
        f"The moment: {scene.query}",
    ]
    if scene.setting.get("setting"):
        lines.append(f"Around you: {scene.setting['setting']}")
    if scene.setting.get("atmosphere"):
        lines.append(f"Atmosphere: {scene.setting['atmosphere']}")
    if scene.moment.get("beat"):
        lines.append(f"What is happening: {scene.moment['beat']}")
    return "\n".join(lines)


def character_system(scene: Scene, persona: Persona) -> str:
    """Who the model plays, and where and when."""
    bio = [
        persona.system_prompt or f"You are {persona.name}.",
        f"Personality: {persona.personality}" if persona.personality else "",
        f"Speaking style and voice: {persona.speaking_style}" if persona.speaking_style else "",
        f"How you feel right now: {persona.emotional_state}" if persona.emotional_state else "",
        f"What you know and want: {persona.dialog_context}" if persona.dialog_context else "",
        f"Who you are: {persona.historical_note}" if persona.historical_note else "",
    ]
    return compose(
        "\n".join(line for line in bio if line),
        f"## The moment\n{_moment(scene)}",
        IN_CHARACTER_RULE,
    )


def transcript(lines: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{speaker}: {text}" for speaker, text in lines)


def chat_prompt(
    persona: Persona, history: Sequence[tuple[str, str]], message: str, *, structured: bool
) -> str:
    return compose(
        f"## The conversation so far\n{transcript(history)}" if history else "",
        f"## A visitor says to you\n{message}",
        f"Answer as {persona.name}." + (f" {REPLY_FIELDS}" if structured else ""),
    )


DIRECTOR_SYSTEM = f"""You direct a scene of several historical people talking among \
themselves. Given who is present and what has been said, decide who speaks next - whoever \
would naturally answer, interrupt or break the silence - and the tone of their line, or end \
the exchange when it has reached a natural close (a question settled, a decision taken, a \
silence that should stay). Not everyone must speak; nobody speaks twice in a row unless \
answering. {PERIOD_RULE}"""


def _scene_block(scene: Scene, people: Sequence[Persona]) -> str:
    present = "\n".join(
        f"- {p.name}" + (f" ({p.role})" if p.role else "") + f": {p.personality}" for p in people
    )
    return compose(f"## The moment\n{_moment(scene)}", f"## Present\n{present}")


def exchange_prompt(
    scene: Scene,
    people: Sequence[Persona],
    said: Sequence[tuple[str, str]],
    direction: str | None,
    lines: int,
    *,
    director: bool,
) -> str:
    """What the director (who speaks next, at most `lines` more) or the writer of a batch
    (at most `lines` new lines) is shown: the moment, who is present, the direction and what
    has been said. Only the director is told of a silence: it decides who breaks it."""
    names = ", ".join(p.name for p in people)
    if director:
        nothing_said = "## Said so far\n(silence)"
        task = (
            f"At most {lines} more line(s). Answer as JSON: `speaker` one of {names} (exactly "
            "as written), `tone` one or two words, `end` true instead when the exchange is over."
        )
    else:
        nothing_said = ""
        task = (
            f"Write at most {lines} new line(s) continuing the exchange, as JSON `lines`: each "
            f"with `speaker` (one of {names}), `text` and `tone`."
        )
    return compose(
        _scene_block(scene, people),
        f"## Direction\n{direction}" if direction else "",
        f"## Said so far\n{transcript(said)}" if said else nothing_said,
        task,
    )


def line_prompt(
    persona: Persona, said: Sequence[tuple[str, str]], direction: str | None, tone: str
) -> str:
    return compose(
        f"## Direction\n{direction}" if direction else "",
        f"## Said so far\n{transcript(said)}" if said else "## Said so far\n(silence)",
        f"Speak your next line as {persona.name}, {tone}: spoken words only, at most about "
        "forty words, answering what was just said or breaking the silence.",
    )


BATCH_SYSTEM = f"""You write the spoken lines that continue a historical scene. Each speaker \
must sound unmistakably like themselves (vocabulary, rhythm, register shaped by their rank \
and temperament). Lines answer each other; tension rises or breaks. Spoken words only, no \
stage directions. {PERIOD_RULE} {SAFETY_RULE}"""


def survey_prompt(
    persona: Persona,
    question: str,
    earlier: Sequence[tuple[str, str, str]],
    *,
    structured: bool,
) -> str:
    heard = "\n".join(f"{name}, asked “{q}”, said: {a}" for name, q, a in earlier)
    return compose(
        f"## What others present have already said\n{heard}" if heard else "",
        f"## You are asked\n{question}",
        f"Answer as {persona.name}." + (f" {ANSWER_FIELDS}" if structured else ""),
    )


READING_SYSTEM = """You read one person's spoken answer to a question and describe it. \
`sentiment`: positive, negative, neutral or mixed (their attitude to the question); \
`key_points`: two to four short phrases summing up what they said; `emotional_tone`: one or \
two words for how they said it."""


def reading_prompt(name: str, question: str, answer: str) -> str:
    return compose(f"Question: {question}", f"{name} answered: {answer}")


SUMMARY_SYSTEM = """You summarise a survey of historical people who were asked the same \
questions at one moment: where they agree, where they differ and why (rank, interests, \
temperament), in one short paragraph. Quote no one at length; invent nothing they did not \
say."""


def summary_prompt(scene: Scene, answers: Sequence[tuple[str, str, str]]) -> str:
    said = "\n".join(f"- {name}, on “{question}”: {answer}" for name, question, answer in answers)
    return compose(f"## The moment\n{_moment(scene)}", f"## Answers\n{said}")
