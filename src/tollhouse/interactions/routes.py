"""/api/v1/interactions: chat, dialog and survey (JSON and SSE), and chat sessions.

Every talking route checks, before anything is charged: a provider is configured (503), the
body is valid and the model allowed (422), the timepoint is visible (404/403), it has the
characters asked for (404), the session is the caller's (404). Then it holds the price
(402 when short) and commits, so no transaction stays open while the model answers. The
hold is captured when the answer is delivered and released on every other ending: an LLM
failure (502), a timeout (408), a client that hangs up before the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import GatewayCaller
from tollhouse.interactions import service, turns
from tollhouse.interactions.schemas import (
    ChatRequest,
    ChatResponse,
    DialogRequest,
    DialogResponse,
    SessionDeleted,
    SessionList,
    SessionView,
    SurveyRequest,
    SurveyResponse,
)

router = APIRouter(prefix="/api/v1/interactions", tags=["interactions"])

# --- chat, dialog, survey ---------------------------------------------------------------


def _talking_routes(
    kind: turns.TurnKind,
    body_model: type[BaseModel],
    answer_model: type[BaseModel],
    answer_doc: str,
    stream_doc: str,
) -> None:
    """`POST /{timepoint_id}/<kind>` (the JSON answer) and `…/<kind>/stream` (SSE frames):
    the same checks and hold, then one answers once the model is done, the other streams."""
    path = f"/{{timepoint_id}}/{kind}"
    answer = _talking_endpoint(kind, body_model, answer_doc, stream=False)
    stream = _talking_endpoint(kind, body_model, stream_doc, stream=True)
    router.add_api_route(path, answer, methods=["POST"], name=kind, response_model=answer_model)
    router.add_api_route(
        f"{path}/stream", stream, methods=["POST"], name=f"{kind}_stream", response_model=None
    )


def _talking_endpoint(
    kind: turns.TurnKind, body_model: type[BaseModel], doc: str, *, stream: bool
) -> Callable[..., Awaitable[Any]]:
    async def endpoint(
        timepoint_id: uuid.UUID,
        body: turns.TalkRequest,
        request: Request,
        caller: GatewayCaller,
        session: SessionDep,
    ) -> Any:
        turn, charge, events, deliver = await turns.Turn.start(
            kind, timepoint_id, body, request, caller, session, stream=stream
        )
        if stream:
            return turn.stream_response(charge, events, deliver)
        return await turn.answer(charge, events, deliver)

    # FastAPI reads the body's model from the annotation and the description from the
    # docstring: each kind's own, as if its handler were written out.
    endpoint.__annotations__["body"] = body_model
    endpoint.__doc__ = doc
    return endpoint


_talking_routes(
    "chat",
    ChatRequest,
    ChatResponse,
    "A reply in the character's voice (1 credit, `chat`); 408 after CHAT_TIMEOUT_SECONDS.",
    "`token` frames as the reply arrives, then `done` with the whole reply (charged as chat).",
)
_talking_routes(
    "dialog",
    DialogRequest,
    DialogResponse,
    "New lines continuing the scene's dialog; 408 after DIALOG_TIMEOUT_SECONDS.",
    "`token` frames, a `line` frame per finished line, then `done` with the whole dialog.",
)
_talking_routes(
    "survey",
    SurveyRequest,
    SurveyResponse,
    "Every chosen character answers every question; 408 after SURVEY_TIMEOUT_SECONDS.",
    "One character at a time: `token` frames, a `response` frame per answer, `summary`,\n"
    "then `done` with the whole survey.",
)


# --- sessions -------------------------------------------------------------------------


@router.get("/sessions/{timepoint_id}", response_model=SessionList)
async def list_sessions(
    timepoint_id: uuid.UUID, caller: GatewayCaller, session: SessionDep
) -> SessionList:
    """The caller's own chat sessions with this timepoint's characters."""
    return await service.list_for(session, caller, timepoint_id)


@router.get("/session/{session_id}", response_model=SessionView)
async def get_session(session_id: str, caller: GatewayCaller, session: SessionDep) -> SessionView:
    return await service.read(session, caller, session_id)


@router.delete("/session/{session_id}", response_model=SessionDeleted)
async def delete_session(
    session_id: str, caller: GatewayCaller, session: SessionDep
) -> SessionDeleted:
    await service.delete(session, caller, session_id)
    return SessionDeleted(deleted=True, session_id=session_id)
