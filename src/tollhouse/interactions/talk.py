"""What the characters say: chat, dialog and survey as streams of events.

Each operation is one async generator: `token` events while text arrives (streams only),
`line` / `response` events as each line or answer is finished, and a last `done` event whose
data is the whole result. The JSON routes keep only the last event; the SSE routes send
them all — one code path for both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tollhouse.generation.agents.dialog import DialogScript
from tollhouse.generation.context import RunLLM
from tollhouse.generation.llm.router import LLMUnavailable
from tollhouse.interactions import prompts
from tollhouse.interactions.errors import InteractionFailed, InteractionTimedOut
from tollhouse.interactions.scene import Persona, Scene
from tollhouse.interactions.schemas import (
    ChatResponse,
    DialogLineOut,
    DialogResponse,
    Sentiment,
    SurveyAnswer,
    SurveyResponse,
)

LINE_MAX_TOKENS = 256
ANSWER_MAX_TOKENS = 700


@dataclass(frozen=True, slots=True)
class Event:
    # "start" | "token" | "line" | "response" | "summary" | "done" (+ "spoken", internal)
    name: str
    data: Any

    def wire(self) -> dict[str, Any]:
        data = self.data.model_dump(mode="json") if isinstance(self.data, BaseModel) else self.data
        return {"event": self.name, "data": data, "error": None}


Events = AsyncGenerator[Event, None]


class CharacterReply(BaseModel):
    response: str
    emotional_tone: str = ""


class Turn(BaseModel):
    """The director's call: who speaks next, how, or that the exchange is over."""

    speaker: str = ""
    tone: str = ""
    end: bool = False


class SurveyReply(BaseModel):
    response: str
    sentiment: Sentiment = "neutral"
    key_points: list[str] = []
    emotional_tone: str = ""


class AnswerReading(BaseModel):
    sentiment: Sentiment = "neutral"
    key_points: list[str] = []
    emotional_tone: str = ""


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def within(events: Events, seconds: float) -> Events:
    """`events` until `seconds` have passed (then 408); an LLM that fails is 502."""
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise InteractionTimedOut()
            try:
                event = await asyncio.wait_for(anext(events), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise InteractionTimedOut() from None
            except LLMUnavailable as exc:
                raise InteractionFailed(detail={"reason": str(exc)}) from exc
            yield event
    finally:
        await events.aclose()


async def result(events: Events) -> Any:
    """The `done` event's data (what the JSON routes answer)."""
    last: Event | None = None
    async for event in events:
        last = event
    assert last is not None
    assert last.name == "done"
    return last.data


class Talk:
    """One request's conversation with a scene (`stream`: token events as text arrives)."""

    def __init__(self, llm: RunLLM, scene: Scene, *, structured: bool, stream: bool) -> None:
        self.llm = llm
        self.scene = scene
        # Streams send text as it comes, so their fields (tone, sentiment) come another way.
        self.structured = structured and not stream
        self.wants_fields = structured
        self.stream = stream

    async def _say(self, speaker: str, system: str, prompt: str, max_tokens: int) -> Events:
        """Free text, as `token` events when streaming; ends with one internal `spoken`."""
        if not self.stream:
            text = await self.llm.text(system, prompt, max_tokens=max_tokens)
        else:
            pieces: list[str] = []
            async for piece in self.llm.stream(system, prompt, max_tokens=max_tokens):
                pieces.append(piece)
                yield Event("token", {"character_name": speaker, "text": piece})
            text = "".join(pieces)
        yield Event("spoken", text.strip())

    # --- chat -------------------------------------------------------------------------

    async def chat(
        self, persona: Persona, history: Sequence[tuple[str, str]], message: str
    ) -> Events:
        started = time.perf_counter()
        yield Event("start", {"character_name": persona.name})
        system = prompts.character_system(self.scene, persona)
        prompt = prompts.chat_prompt(persona, history, message, structured=self.structured)
        tone: str | None = None
        if self.structured:
            reply = await self.llm.structured(
                system, prompt, CharacterReply, max_tokens=ANSWER_MAX_TOKENS
            )
            text, tone = reply.response.strip(), reply.emotional_tone or None
        else:
            text = ""
            async for event in self._say(persona.name, system, prompt, ANSWER_MAX_TOKENS):
                if event.name == "spoken":
                    text = event.data
                else:
                    yield event
        yield Event(
            "done",
            ChatResponse(
                character_name=persona.name,
                response=text,
                session_id=None,
                emotional_tone=tone,
                latency_ms=_ms(started),
            ),
        )

    # --- dialog -----------------------------------------------------------------------

    def _earlier_lines(self) -> list[tuple[str, str]]:
        return [
            (str(line.get("speaker", "")), str(line.get("text", ""))) for line in self.scene.dialog
        ]

    async def dialog(
        self, people: list[Persona], num_lines: int, direction: str | None, sequential: bool
    ) -> Events:
        started = time.perf_counter()
        yield Event("start", {"characters": [p.name for p in people], "num_lines": num_lines})
        said = self._earlier_lines()
        lines: list[DialogLineOut] = []
        if sequential:
            async for event in self._role_play(people, num_lines, direction, said, lines):
                yield event
        else:
            script = await self.llm.structured(
                prompts.BATCH_SYSTEM,
                prompts.exchange_prompt(
                    self.scene, people, said, direction, num_lines, director=False
                ),
                DialogScript,
            )
            by_name = {p.name.casefold(): p.name for p in people}
            for line in script.lines:
                speaker = by_name.get(line.speaker.strip().casefold())
                if speaker is None or len(lines) == num_lines:
                    continue  # the model may only speak for the people chosen
                lines.append(DialogLineOut(speaker=speaker, text=line.text, tone=line.tone))
                yield Event("line", lines[-1])
        context = direction or str(self.scene.moment.get("beat") or self.scene.query)
        yield Event(
            "done",
            DialogResponse(
                dialog=lines,
                context=context,
                characters_involved=sorted({line.speaker for line in lines}),
                latency_ms=_ms(started),
            ),
        )

    def _next_speaker(
        self, turn: Turn, people: list[Persona], lines: list[DialogLineOut]
    ) -> Persona:
        """The director's choice; a name it made up falls to whoever spoke least recently."""
        wanted = turn.speaker.strip().casefold()
        for persona in people:
            if persona.name.casefold() == wanted:
                return persona
        recent = [line.speaker for line in reversed(lines)]
        return min(people, key=lambda p: -recent.index(p.name) if p.name in recent else -1_000)

    async def _role_play(
        self,
        people: list[Persona],
        num_lines: int,
        direction: str | None,
        said: list[tuple[str, str]],
        lines: list[DialogLineOut],
    ) -> Events:
        """The director picks each speaker (or ends the exchange); the speaker, in their
        own voice, says one line seeing everything said before."""
        while len(lines) < num_lines:
            turn = await self.llm.structured(
                prompts.DIRECTOR_SYSTEM,
                prompts.exchange_prompt(
                    self.scene, people, said, direction, num_lines - len(lines), director=True
                ),
                Turn,
                max_tokens=LINE_MAX_TOKENS,
            )
            if turn.end and lines:
                return
            speaker = self._next_speaker(turn, people, lines)
            tone = turn.tone or "in your own manner"
            text = ""
            async for event in self._say(
                speaker.name,
                prompts.character_system(self.scene, speaker),
                prompts.line_prompt(speaker, said, direction, tone),
                LINE_MAX_TOKENS,
            ):
                if event.name == "spoken":
                    text = event.data
                else:
                    yield event
            lines.append(DialogLineOut(speaker=speaker.name, text=text, tone=turn.tone or None))
            said.append((speaker.name, text))
            yield Event("line", lines[-1])

    # --- survey -----------------------------------------------------------------------

    async def _answer(
        self, persona: Persona, question: str, earlier: Sequence[tuple[str, str, str]]
    ) -> Events:
        system = prompts.character_system(self.scene, persona)
        prompt = prompts.survey_prompt(persona, question, earlier, structured=self.structured)
        if self.structured:
            reply = await self.llm.structured(system, prompt, SurveyReply)
            yield Event(
                "response",
                SurveyAnswer(
                    character_name=persona.name,
                    question=question,
                    response=reply.response.strip(),
                    sentiment=reply.sentiment,
                    key_points=reply.key_points,
                    emotional_tone=reply.emotional_tone or None,
                ),
            )
            return
        text = ""
        async for event in self._say(persona.name, system, prompt, ANSWER_MAX_TOKENS):
            if event.name == "spoken":
                text = event.data
            else:
                yield event
        answer = SurveyAnswer(character_name=persona.name, question=question, response=text)
        if self.stream and self.wants_fields:
            # Streamed text has no fields: one short call reads them off the answer.
            reading = await self.llm.structured(
                prompts.READING_SYSTEM,
                prompts.reading_prompt(persona.name, question, text),
                AnswerReading,
            )
            answer.sentiment = reading.sentiment
            answer.key_points = reading.key_points
            answer.emotional_tone = reading.emotional_tone or None
        yield Event("response", answer)

    async def _answers_of(
        self, persona: Persona, questions: list[str], earlier: list[tuple[str, str, str]]
    ) -> list[SurveyAnswer]:
        answers = []
        for question in questions:
            async for event in self._answer(persona, question, earlier):
                answers.append(event.data)
        return answers

    async def survey(
        self,
        people: list[Persona],
        questions: list[str],
        *,
        parallel: bool,
        chain: bool,
        summary: bool,
        mode: str,
    ) -> Events:
        started = time.perf_counter()
        yield Event("start", {"characters": [p.name for p in people], "questions": questions})
        answers: list[SurveyAnswer] = []
        if parallel and not self.stream:
            groups = await asyncio.gather(
                *(self._answers_of(persona, questions, []) for persona in people)
            )
            for answer in (answer for group in groups for answer in group):
                answers.append(answer)
                yield Event("response", answer)
        else:
            # One character at a time (streams always): later ones may hear earlier answers.
            for persona in people:
                for question in questions:
                    earlier = [(a.character_name, a.question, a.response) for a in answers]
                    async for event in self._answer(persona, question, earlier if chain else []):
                        if event.name == "response":
                            answers.append(event.data)
                        yield event
        text: str | None = None
        if summary and answers:
            said = [(a.character_name, a.question, a.response) for a in answers]
            text = (
                await self.llm.text(
                    prompts.SUMMARY_SYSTEM, prompts.summary_prompt(self.scene, said)
                )
            ).strip()
            yield Event("summary", {"summary": text})
        yield Event(
            "done",
            SurveyResponse(
                timepoint_id=self.scene.timepoint_id,
                questions=questions,
                responses=answers,
                summary=text,
                mode=mode,
                total_characters=len(people),
                latency_ms=_ms(started),
            ),
        )
