"""Interaction rules: which scene a caller may talk to, on which model, and chat sessions.

Sessions belong to whoever opened them (a user, or — for callers without one — the
project's non-user callers) and are seen by their owner only: another caller's session id
is "Session not found", exactly like an id that never existed. Listing a timepoint's
sessions needs the timepoint to be visible to the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.generation import planning
from tollhouse.generation import service as generation_service
from tollhouse.generation.context import RunLLM
from tollhouse.generation.runs import Generations
from tollhouse.generation.schemas import GenerateRequest
from tollhouse.identity.caller import Caller, CallerKind
from tollhouse.interactions import repository
from tollhouse.interactions.errors import SessionNotFound
from tollhouse.interactions.models import InteractionMessage, InteractionSession
from tollhouse.interactions.scene import Persona, Scene, scene_of
from tollhouse.interactions.schemas import (
    SessionList,
    SessionMessage,
    SessionSummary,
    SessionView,
)
from tollhouse.kit.clock import utcnow

PREVIEW_CHARS = 50


async def scene_for(session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID) -> Scene:
    """404 when missing or without characters, 403 when private and not the caller's."""
    return scene_of(await generation_service.find_visible(session, caller, timepoint_id))


def llm_for(domain: Generations, scene: Scene, model: str | None) -> RunLLM:
    """The scene's own preset and model policy; `model` overrides the text model under the
    same rules as generation (a permissive scene refuses a restricted model: 422)."""
    plan = planning.plan(
        GenerateRequest(
            query=scene.query[:500],
            preset=scene.preset,
            text_model=model,
            model_policy="permissive" if scene.permissive else None,
        ),
        domain.presets,
        domain.settings,
    )
    return RunLLM(domain.router, plan)


def _owner(caller: Caller) -> uuid.UUID | None:
    return caller.user.id if caller.user is not None else None


def _owns(caller: Caller, row: InteractionSession) -> bool:
    return caller.kind is CallerKind.ADMIN or row.user_id == _owner(caller)


async def find_own(session: AsyncSession, caller: Caller, session_id: str) -> InteractionSession:
    row = await repository.by_id(session, caller.project_id, session_id)
    if row is None or not _owns(caller, row):
        raise SessionNotFound()
    return row


@dataclass(slots=True)
class Thread:
    """The chat session a turn belongs to, decided before anything is charged."""

    # What the answer says: the stored session's id, a new one, or an unknown one echoed.
    session_id: str | None = None
    existing: InteractionSession | None = None
    create: bool = False
    history: list[tuple[str, str]] = field(default_factory=list)


async def thread_for(
    session: AsyncSession,
    caller: Caller,
    scene: Scene,
    session_id: str | None,
    save: bool,
) -> Thread:
    """flash-contract §5: a new session when `save_session` and no id; an id nobody owns is
    echoed back and nothing is stored; the caller's own session carries its history."""
    if session_id is None:
        return Thread(str(uuid.uuid4()), create=True) if save else Thread()
    row = await repository.by_id(session, caller.project_id, session_id)
    if row is None:
        return Thread(session_id)
    if not _owns(caller, row) or row.timepoint_id != scene.timepoint_id:
        raise SessionNotFound()
    stored = (await repository.messages(session, [row.id]))[row.id]
    history = [
        ("Visitor" if m.role == "user" else (m.character_name or row.character_name), m.content)
        for m in stored
    ]
    return Thread(row.id, existing=row, history=history)


async def record_turn(
    session: AsyncSession,
    caller: Caller,
    scene: Scene,
    persona: Persona,
    thread: Thread,
    message: str,
    answer: str,
) -> None:
    """Append the visitor's message and the answer to the thread's session, if it has one."""
    if thread.session_id is None or not (thread.create or thread.existing):
        return
    now = utcnow()
    if thread.create:
        session.add(
            InteractionSession(
                id=thread.session_id,
                project_id=caller.project_id,
                user_id=_owner(caller),
                timepoint_id=scene.timepoint_id,
                character_name=persona.name,
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
    else:
        await repository.touch(session, thread.session_id, now)
    repository.add_messages(
        session,
        [
            InteractionMessage(session_id=thread.session_id, role="user", content=message),
            InteractionMessage(
                session_id=thread.session_id,
                role="character",
                content=answer,
                character_name=persona.name,
            ),
        ],
    )


def _messages(rows: Sequence[InteractionMessage]) -> list[SessionMessage]:
    return [
        SessionMessage(
            role=row.role,
            content=row.content,
            character_name=row.character_name,
            timestamp=row.created_at,
        )
        for row in rows
    ]


def view(row: InteractionSession, messages: Sequence[InteractionMessage]) -> SessionView:
    return SessionView(
        id=row.id,
        timepoint_id=row.timepoint_id,
        character_name=row.character_name,
        messages=_messages(messages),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def read(session: AsyncSession, caller: Caller, session_id: str) -> SessionView:
    row = await find_own(session, caller, session_id)
    return view(row, (await repository.messages(session, [row.id]))[row.id])


async def list_for(session: AsyncSession, caller: Caller, timepoint_id: uuid.UUID) -> SessionList:
    await generation_service.find_visible(session, caller, timepoint_id)
    rows = await repository.of_timepoint(session, caller.project_id, timepoint_id, _owner(caller))
    messages = await repository.messages(session, [row.id for row in rows])
    summaries = []
    for row in rows:
        said = messages[row.id]
        summaries.append(
            SessionSummary(
                id=row.id,
                character_name=row.character_name,
                message_count=len(said),
                last_message_preview=said[-1].content[:PREVIEW_CHARS] if said else None,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
        )
    return SessionList(sessions=summaries, total=len(summaries))


async def delete(session: AsyncSession, caller: Caller, session_id: str) -> None:
    row = await find_own(session, caller, session_id)
    await repository.remove(session, [row.id])
