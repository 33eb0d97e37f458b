"""Wire shapes of /api/v1/interactions (flash-contract §5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

ResponseFormat = Literal["structured", "text", "auto"]
Characters = Literal["all"] | list[str]
Sentiment = Literal["positive", "negative", "neutral", "mixed"]
Model = str | None


class ChatRequest(BaseModel):
    character: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1, max_length=4000)
    session_id: str | None = Field(None, min_length=1, max_length=36)
    save_session: bool = False
    model: Model = Field(None, min_length=1, max_length=200)
    response_format: ResponseFormat = "auto"


class ChatResponse(BaseModel):
    character_name: str
    response: str
    session_id: str | None
    emotional_tone: str | None
    latency_ms: int


class DialogRequest(BaseModel):
    characters: Characters = "all"
    num_lines: int = Field(5, ge=1, le=10)
    prompt: str | None = Field(None, max_length=2000)
    sequential: bool = True
    model: Model = Field(None, min_length=1, max_length=200)
    response_format: ResponseFormat = "auto"


class DialogLineOut(BaseModel):
    speaker: str
    text: str
    tone: str | None = None


class DialogResponse(BaseModel):
    dialog: list[DialogLineOut]
    context: str
    characters_involved: list[str]
    latency_ms: int


class SurveyRequest(BaseModel):
    characters: Characters = "all"
    questions: list[str] = Field(min_length=1, max_length=10)
    mode: Literal["parallel", "sequential"] = "parallel"
    chain_prompts: bool = False
    include_summary: bool = True
    model: Model = Field(None, min_length=1, max_length=200)
    response_format: ResponseFormat = "auto"


class SurveyAnswer(BaseModel):
    character_name: str
    question: str
    response: str
    sentiment: Sentiment | None = None
    key_points: list[str] = Field(default_factory=list)
    emotional_tone: str | None = None


class SurveyResponse(BaseModel):
    timepoint_id: uuid.UUID
    questions: list[str]
    responses: list[SurveyAnswer]
    summary: str | None
    mode: str
    total_characters: int
    latency_ms: int


class SessionMessage(BaseModel):
    role: Literal["user", "character", "system"]
    content: str
    character_name: str | None
    timestamp: datetime


class SessionView(BaseModel):
    id: str
    timepoint_id: uuid.UUID
    character_name: str
    messages: list[SessionMessage]
    created_at: datetime
    updated_at: datetime


class SessionSummary(BaseModel):
    id: str
    character_name: str
    message_count: int
    last_message_preview: str | None
    created_at: datetime
    updated_at: datetime


class SessionList(BaseModel):
    sessions: list[SessionSummary]
    total: int


class SessionDeleted(BaseModel):
    deleted: bool
    session_id: str
