"""The one LLM interface the agents use, and what a provider must implement.

Four kinds of call: structured output into a Pydantic model, plain text, a token stream, and
an image. Model ids are written the OpenRouter way ("google/gemini-2.5-flash"); each provider
says which ids it can serve and under what name (`Provider.serves`).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Sampling:
    """Generation parameters; None leaves the provider's default."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()
    # "low" | "medium" | "high" (providers map it to their reasoning/thinking budget).
    thinking_level: str | None = None


@dataclass(frozen=True, slots=True)
class TextRequest:
    model: str
    system: str
    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    # Ask for web-search grounding where the provider and model support it (Google).
    grounded: bool = False
    # The provider to try first (a preset's own); the others are fallbacks.
    prefer: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: str
    prompt: str
    # "1K" | "2K" where the model supports sizes.
    size: str | None = None
    prefer: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    """A call's result and its accounting."""

    value: T
    provider: str
    model: str
    latency_ms: int
    usage: Usage
    # Attempts it took, across retries and fallbacks (1 = first try).
    attempts: int = 1


@functools.cache
def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema, built once per class (~1 ms each time); shared: never mutate it."""
    return schema.model_json_schema()


class ProviderError(Exception):
    """A provider call failed. `retryable`: 429, 5xx, timeouts and dropped connections."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        # Seconds the provider asked us to wait (Retry-After), when it said.
        self.retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """A model a provider's own catalogue lists (what its `/models` endpoint says)."""

    id: str
    name: str | None = None
    context_length: int | None = None
    # USD per token, as the provider prices it; None when it does not say.
    prompt_price: float | None = None
    completion_price: float | None = None
    output_modalities: tuple[str, ...] = ("text",)


class Provider(Protocol):
    """One LLM backend. Raises ProviderError (never the SDK's own exceptions)."""

    name: str

    def serves(self, model: str) -> str | None:
        """The id to send for `model`, or None when this provider cannot serve it."""
        ...

    async def structured(
        self, request: TextRequest, model: str, schema: type[M]
    ) -> tuple[M, Usage]: ...

    async def text(self, request: TextRequest, model: str) -> tuple[str, Usage]: ...

    def stream(self, request: TextRequest, model: str) -> AsyncIterator[str]: ...

    async def image(self, request: ImageRequest, model: str) -> tuple[Image, Usage]: ...

    async def list_models(self) -> list[RemoteModel]: ...

    async def close(self) -> None: ...
