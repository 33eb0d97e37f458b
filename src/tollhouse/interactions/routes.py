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

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

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

# --- chat -----------------------------------------------------------------------------


@router.post("/{timepoint_id}/chat", response_model=ChatResponse)
async def chat(
    timepoint_id: uuid.UUID,
    body: ChatRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> ChatResponse:
    """A reply in the character's voice (1 credit, `chat`); 408 after CHAT_TIMEOUT_SECONDS."""
    turn, charge, events, deliver = await turns.chat(
        timepoint_id, body, request, caller, session, stream=False
    )
    reply: ChatResponse = await turn.answer(charge, events, deliver)
    return reply


@router.post("/{timepoint_id}/chat/stream")
async def chat_stream(
    timepoint_id: uuid.UUID,
    body: ChatRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> StreamingResponse:
    """`token` frames as the reply arrives, then `done` with the whole reply (charged as chat)."""
    turn, charge, events, deliver = await turns.chat(
        timepoint_id, body, request, caller, session, stream=True
    )
    return turn.stream_response(charge, events, deliver)


# --- dialog ---------------------------------------------------------------------------


@router.post("/{timepoint_id}/dialog", response_model=DialogResponse)
async def dialog(
    timepoint_id: uuid.UUID,
    body: DialogRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> DialogResponse:
    """New lines continuing the scene's dialog; 408 after DIALOG_TIMEOUT_SECONDS."""
    turn, charge, events = await turns.dialog(
        timepoint_id, body, request, caller, session, stream=False
    )
    answer: DialogResponse = await turn.answer(charge, events)
    return answer


@router.post("/{timepoint_id}/dialog/stream")
async def dialog_stream(
    timepoint_id: uuid.UUID,
    body: DialogRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> StreamingResponse:
    """`token` frames, a `line` frame per finished line, then `done` with the whole dialog."""
    turn, charge, events = await turns.dialog(
        timepoint_id, body, request, caller, session, stream=True
    )
    return turn.stream_response(charge, events)


# --- survey ---------------------------------------------------------------------------


@router.post("/{timepoint_id}/survey", response_model=SurveyResponse)
async def survey(
    timepoint_id: uuid.UUID,
    body: SurveyRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> SurveyResponse:
    """Every chosen character answers every question; 408 after SURVEY_TIMEOUT_SECONDS."""
    turn, charge, events = await turns.survey(
        timepoint_id, body, request, caller, session, stream=False
    )
    answer: SurveyResponse = await turn.answer(charge, events)
    return answer


@router.post("/{timepoint_id}/survey/stream")
async def survey_stream(
    timepoint_id: uuid.UUID,
    body: SurveyRequest,
    request: Request,
    caller: GatewayCaller,
    session: SessionDep,
) -> StreamingResponse:
    """One character at a time: `token` frames, a `response` frame per answer, `summary`,
    then `done` with the whole survey."""
    turn, charge, events = await turns.survey(
        timepoint_id, body, request, caller, session, stream=True
    )
    return turn.stream_response(charge, events)


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
