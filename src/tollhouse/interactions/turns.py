"""A character interaction from check to payment, for every way it is asked for (the JSON
and SSE routes, the MCP tools): check everything, hold the price and commit, let the model
talk, capture on delivery, release on every other ending (LLM failure 502, timeout 408, a
client that hangs up before the answer)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation.routes import generations
from tollhouse.generation.runs import Generations
from tollhouse.identity.caller import Caller
from tollhouse.interactions import service
from tollhouse.interactions.scene import Persona, Scene
from tollhouse.interactions.schemas import ChatRequest, ChatResponse, DialogRequest, SurveyRequest
from tollhouse.interactions.talk import Events, Talk, result, within
from tollhouse.kit import sse
from tollhouse.kit.errors import TollhouseError
from tollhouse.ledger import service as ledger_service
from tollhouse.ledger.charging import Charge, hold_charge, settled

if TYPE_CHECKING:
    from tollhouse.config import Settings

# Type of the ledger rows (flash-contract §3.1 names `chat` for every character interaction).
LEDGER_TYPE = "chat"

Deliver = Callable[[AsyncSession, Any], Awaitable[None]]
TurnKind = Literal["chat", "dialog", "survey"]
TalkRequest = ChatRequest | DialogRequest | SurveyRequest
_TIMEOUTS: dict[TurnKind, Callable[[Settings], float]] = {
    "chat": lambda settings: settings.chat_timeout_seconds,
    "dialog": lambda settings: settings.dialog_timeout_seconds,
    "survey": lambda settings: settings.survey_timeout_seconds,
}


async def _nothing_to_store(_session: AsyncSession, _result: Any) -> None:
    return None


class Turn:
    """A talking request, checked and ready: the scene, the talk, the timeout."""

    def __init__(
        self,
        request: Request,
        caller: Caller,
        session: AsyncSession,
        *,
        timeout: float,
        model: str | None,
        response_format: str,
        stream: bool,
    ) -> None:
        self.request = request
        self.caller = caller
        self.session = session
        self.timeout = timeout
        self.model = model
        self.structured = response_format != "text"
        self.stream = stream
        self.domain: Generations = generations(request)
        self.domain.require_provider()

    @classmethod
    async def start(
        cls,
        kind: TurnKind,
        timepoint_id: uuid.UUID,
        body: TalkRequest,
        request: Request,
        caller: Caller,
        session: AsyncSession,
        *,
        stream: bool,
    ) -> Asked:
        """Check a `kind` request (its body is that kind's model) and hold its price, with
        that kind's timeout: 503 without a provider, 404/403 for a timepoint the caller may
        not see, 422 for a model refused, 402 when short. Answers the turn, the charge, the
        model's events and what stores the answer once it is delivered."""
        settings = generations(request).settings
        turn = cls(
            request,
            caller,
            session,
            timeout=_TIMEOUTS[kind](settings),
            model=body.model,
            response_format=body.response_format,
            stream=stream,
        )
        scene, talk = await turn.scene(timepoint_id)
        return await _ASKS[kind](turn, scene, talk, body)

    async def scene(self, timepoint_id: uuid.UUID) -> tuple[Scene, Talk]:
        scene = await service.scene_for(self.session, self.caller, timepoint_id)
        llm = service.llm_for(self.domain, scene, self.model)
        return scene, Talk(llm, scene, structured=self.structured, stream=self.stream)

    async def hold(self, cost_key: str, scene: Scene, description: str) -> Charge:
        """Hold the price and commit: the model is never awaited inside a transaction."""
        charge = await hold_charge(
            self.request,
            self.caller,
            self.session,
            cost_key,
            LEDGER_TYPE,
            reference_id=str(scene.timepoint_id),
            description=description,
            ttl=timedelta(seconds=self.timeout + 120),
        )
        await self.session.commit()
        return charge

    async def answer(
        self, charge: Charge, events: Events, deliver: Deliver = _nothing_to_store
    ) -> Any:
        """The JSON answer, stored and paid in the request's transaction; a failure releases
        the hold (committed) and answers the error."""
        async with settled(charge, self.session):
            answer = await result(within(events, self.timeout))
            await deliver(self.session, answer)
            return answer

    def stream_response(
        self, charge: Charge, events: Events, deliver: Deliver = _nothing_to_store
    ) -> StreamingResponse:
        frames = _frames(self.domain, charge, within(events, self.timeout), deliver)
        return StreamingResponse(
            sse.with_keepalive(frames, self.domain.settings.sse_keepalive_seconds),
            media_type=sse.MEDIA_TYPE,
            headers=sse.HEADERS,
        )


# What `ask` answers: the turn, the held charge, the model's events, what stores the answer.
Asked = tuple[Turn, Charge, Events, Deliver]


def _frame(body: dict[str, Any]) -> bytes:
    return sse.frame(json.dumps(body, separators=(",", ":")))


async def _frames(
    domain: Generations, charge: Charge, events: Events, deliver: Deliver
) -> AsyncIterator[bytes]:
    """Every event as a frame. Once the `done` frame has gone out (the server asked for the
    next one), the answer is delivered: stored and paid in one transaction. Any other
    ending — an error frame, a client gone — releases the hold."""
    delivered = False
    try:
        async for event in events:
            yield _frame(event.wire())
            if event.name == "done":
                async with domain.database.session() as session:
                    await deliver(session, event.data)
                    if charge.hold_id is not None:
                        await ledger_service.capture_hold(session, charge.hold_id)
                delivered = True
    except TollhouseError as exc:
        error = {"code": exc.code, "status": exc.status_code, "detail": exc.detail}
        yield _frame({"event": "error", "data": error, "error": exc.message})
    finally:
        if not delivered:
            # Shielded: a cancelled stream (the client left) must still refund.
            await asyncio.shield(charge.release())


async def _chat(turn: Turn, scene: Scene, talk: Talk, body: ChatRequest) -> Asked:
    persona: Persona = scene.person(body.character)
    thread = await service.thread_for(
        turn.session, turn.caller, scene, body.session_id, body.save_session
    )
    charge = await turn.hold("chat", scene, f"Chat with {persona.name}")

    async def deliver(into: AsyncSession, reply: ChatResponse) -> None:
        await service.record_turn(
            into, turn.caller, scene, persona, thread, body.message, reply.response
        )

    async def events() -> Events:
        async for event in talk.chat(persona, thread.history, body.message):
            if event.name == "done":
                event.data.session_id = thread.session_id
            yield event

    return turn, charge, events(), deliver


async def _dialog(turn: Turn, scene: Scene, talk: Talk, body: DialogRequest) -> Asked:
    people = scene.people(body.characters)
    charge = await turn.hold("dialog", scene, f"Dialog: {', '.join(p.name for p in people)}"[:200])
    events = talk.dialog(people, body.num_lines, body.prompt, body.sequential)
    return turn, charge, events, _nothing_to_store


async def _survey(turn: Turn, scene: Scene, talk: Talk, body: SurveyRequest) -> Asked:
    people = scene.people(body.characters)
    charge = await turn.hold("survey", scene, f"Survey of {len(people)} character(s)")
    events = talk.survey(
        people,
        body.questions,
        parallel=body.mode == "parallel",
        # Earlier answers can only be shown when characters answer one after another.
        chain=body.chain_prompts and (body.mode == "sequential" or turn.stream),
        summary=body.include_summary,
        mode=body.mode,
    )
    return turn, charge, events, _nothing_to_store


_ASKS: dict[TurnKind, Callable[[Turn, Scene, Talk, Any], Awaitable[Asked]]] = {
    "chat": _chat,
    "dialog": _dialog,
    "survey": _survey,
}
