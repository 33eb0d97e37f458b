"""Wire shapes of /api/v1/timepoints (flash-contract §1.3, §4.5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Visibility = Literal["public", "private"]


class LLMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, ge=0, le=2)
    stop: list[str] | None = Field(None, max_length=4)
    thinking_level: Literal["low", "medium", "high"] | None = None
    system_prompt_prefix: str | None = Field(None, max_length=2000)
    system_prompt_suffix: str | None = Field(None, max_length=2000)


class GenerateRequest(BaseModel):
    query: str = Field(min_length=3, max_length=500)
    generate_image: bool = False
    # An unknown preset is a 422 naming the known ones (planning.plan).
    preset: str | None = Field(None, max_length=40)
    text_model: str | None = Field(None, min_length=1, max_length=200)
    image_model: str | None = Field(None, min_length=1, max_length=200)
    visibility: Visibility = "public"
    callback_url: str | None = Field(None, max_length=2000)
    model_policy: Literal["permissive"] | None = None
    llm_params: LLMParams | None = None
    request_context: dict[str, Any] | None = None
    entity_ids: list[str] = Field(default_factory=list, max_length=20)
    # Also write the finished scene's TDF record to storage (as POST …/export does).
    write_blob: bool = False

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if len(query.strip()) < 3:
            raise ValueError("query must have at least 3 non-blank characters")
        return query.strip()


class GenerationStarted(BaseModel):
    id: uuid.UUID
    status: str
    message: str
    request_context: dict[str, Any] | None = None


class TimepointResponse(BaseModel):
    id: uuid.UUID
    query: str
    slug: str
    status: str
    year: int | None = None
    month: int | None = None
    day: int | None = None
    season: str | None = None
    time_of_day: str | None = None
    era: str | None = None
    location: str | None = None
    image_prompt: str | None = None
    has_image: bool = False
    image_url: str | None = None
    image_base64: str | None = None
    text_model_used: str | None = None
    image_model_used: str | None = None
    created_at: datetime
    error: str | None = None
    blob_folder_name: str | None = None
    blob_path: str | None = None
    blob_written_at: datetime | None = None
    is_deleted: bool = False
    sequence_id: str | None = None
    render_type: str = "image"
    generation_version: int = 1
    tags: list[str] = Field(default_factory=list)
    visibility: Visibility = "public"
    share_url: str | None = None
    preset_used: str | None = None
    generation_time_ms: int | None = None
    model_provider: str = "unknown"
    model_permissiveness: str = "unknown"
    request_context: dict[str, Any] | None = None
    # Full responses only.
    metadata: dict[str, Any] | None = None
    characters: dict[str, Any] | None = None
    scene: dict[str, Any] | None = None
    dialog: list[dict[str, Any]] | None = None
    grounding: dict[str, Any] | None = None
    moment: dict[str, Any] | None = None


class TimepointPage(BaseModel):
    items: list[TimepointResponse]
    total: int
    page: int
    page_size: int


class TimepointSummary(BaseModel):
    id: uuid.UUID
    query: str
    slug: str
    status: str
    year: int | None
    location: str | None
    has_image: bool
    visibility: Visibility
    created_at: datetime


class TimepointSummaryPage(BaseModel):
    items: list[TimepointSummary]
    total: int
    page: int
    page_size: int


class VisibilityUpdate(BaseModel):
    visibility: str


class Deleted(BaseModel):
    id: uuid.UUID
    deleted: bool
    message: str


class CharacterView(BaseModel):
    name: str
    role: str | None = None
    system_prompt: str | None = None
    dialog_context: str | None = None
    speaks_in_scene: bool = True
    personality: str | None = None
    speaking_style: str | None = None
    emotional_state: str | None = None
    historical_note: str | None = None


class CharactersResponse(BaseModel):
    timepoint_id: uuid.UUID
    query: str
    year: int | None
    location: str | None
    era: str | None
    total_characters: int
    speaking_characters: int
    characters: list[CharacterView]


class ModelPricing(BaseModel):
    """USD per token, as the provider prices it."""

    prompt: float | None
    completion: float | None


class ModelInfo(BaseModel):
    id: str
    name: str
    provider: str
    # The id the provider is sent (LLM_MODEL on an OpenAI-compatible server, for example).
    served_as: str
    capabilities: list[Literal["text", "image"]]
    context_length: int | None = None
    is_free: bool = False
    pricing: ModelPricing | None = None
    permissiveness: str
    # Named by this server's configuration (a preset, a default), not only listed upstream.
    configured: bool


class ModelList(BaseModel):
    models: list[ModelInfo]
    total: int
    # The providers' catalogues came from the cache (or were not asked for).
    cached: bool


class ProviderInfo(BaseModel):
    provider: str
    available: bool
    models_count: int
    default_text_model: str | None
    default_image_model: str | None


class ProviderList(BaseModel):
    providers: list[ProviderInfo]


class FreeModels(BaseModel):
    best: ModelInfo | None
    fastest: ModelInfo | None
    all_free: list[ModelInfo]
    total: int
    note: str


class EntityHit(BaseModel):
    id: str
    display_name: str
    entity_type: str | None = None
    score: float | None = None


class EntitySearch(BaseModel):
    results: list[EntityHit]
    query: str
    total: int


class RegroundRequest(BaseModel):
    deep: bool = False
    x_handle: str | None = Field(None, min_length=1, max_length=50, pattern=r"^@?\w+$")


class RegroundTask(BaseModel):
    task_id: str
    entity_id: str
    status: Literal["queued", "running", "completed", "failed"]
    error: str | None = None
    grounding_model: str | None = None
    grounded_at: str | None = None
    confidence: float | None = None


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=3, max_length=500)
    # Explicit models, else the named set's (GET /eval/models lists the sets).
    models: list[str] | None = Field(None, min_length=1, max_length=10)
    preset: Literal["verified", "google_native", "openrouter", "all"] = "verified"
    prompt_type: Literal["text"] = "text"
    timeout_seconds: float = Field(120, ge=10, le=600)


class ModelRun(BaseModel):
    model: str
    success: bool
    provider: str | None = None
    served_as: str | None = None
    latency_ms: int | None = None
    output: str | None = None
    output_length: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None


class LatencyStats(BaseModel):
    min_ms: int
    max_ms: int
    mean_ms: int
    median_ms: int
    stdev_ms: int


class RankedModel(BaseModel):
    rank: int
    model: str
    latency_ms: int


class Comparison(BaseModel):
    query: str
    models: list[str]
    results: list[ModelRun]
    succeeded: int
    failed: int
    latency: LatencyStats | None
    ranking: list[RankedModel]
    fastest: str | None
    slowest: str | None


class ComparisonReport(BaseModel):
    comparison: Comparison
    report: str


class EvalModels(BaseModel):
    presets: dict[str, int]
    models: list[str]
    sets: dict[str, list[str]]
