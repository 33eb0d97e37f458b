"""What one generation's steps share: the resolved request, the LLM, and earlier results.

`RunLLM` is the agents' only way to the LLM: it fills in the run's models and sampling,
wraps system prompts with the caller's prefix/suffix, caps calls in flight at the preset's
parallelism, and books every call's tokens and latency on the step that made it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import BaseModel

from tollhouse.generation.llm.base import Image, ImageRequest, Reply, Sampling, TextRequest
from tollhouse.generation.llm.router import LLMRouter
from tollhouse.generation.pipeline import current_stats
from tollhouse.generation.presets import Preset

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class SceneRequest:
    """A generate request, resolved against its preset and the model policy."""

    query: str
    preset: Preset
    text_model: str
    image_model: str
    judge_model: str
    sampling: Sampling
    generate_image: bool = False
    permissive: bool = False
    system_prompt_prefix: str = ""
    system_prompt_suffix: str = ""
    entity_ids: tuple[str, ...] = ()
    # What every step after the judge must keep (a temporal jump's carried-over scene).
    continuity: str = ""


class RunLLM:
    def __init__(self, router: LLMRouter, request: SceneRequest) -> None:
        self._router = router
        self._request = request
        self._slots = asyncio.Semaphore(request.preset.parallelism)

    def _system(self, system: str) -> str:
        parts = (self._request.system_prompt_prefix, system, self._request.system_prompt_suffix)
        return "\n\n".join(part for part in parts if part)

    def _text_request(
        self, system: str, prompt: str, model: str | None, max_tokens: int | None, grounded: bool
    ) -> TextRequest:
        sampling = self._request.sampling
        if max_tokens is not None:
            sampling = replace(
                sampling, max_tokens=min(max_tokens, sampling.max_tokens or max_tokens)
            )
        return TextRequest(
            model=model or self._request.text_model,
            system=self._system(system),
            prompt=prompt,
            sampling=sampling,
            grounded=grounded,
            prefer=self._request.preset.provider,
        )

    @staticmethod
    def _book(reply: Reply[Any]) -> None:
        stats = current_stats.get()
        if stats is None:
            return
        stats.calls += reply.attempts
        stats.input_tokens += reply.usage.input_tokens
        stats.output_tokens += reply.usage.output_tokens
        stats.provider = reply.provider
        stats.model = reply.model
        stats.llm_ms += reply.latency_ms

    async def structured(
        self,
        system: str,
        prompt: str,
        schema: type[M],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        grounded: bool = False,
    ) -> M:
        request = self._text_request(system, prompt, model, max_tokens, grounded)
        async with self._slots:
            reply = await self._router.structured(request, schema)
        self._book(reply)
        return reply.value

    async def text(
        self, system: str, prompt: str, *, model: str | None = None, max_tokens: int | None = None
    ) -> str:
        request = self._text_request(system, prompt, model, max_tokens, False)
        async with self._slots:
            reply = await self._router.text(request)
        self._book(reply)
        return reply.value

    async def stream(
        self, system: str, prompt: str, *, model: str | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        """Text as the provider produces it (retries happen only before the first piece)."""
        request = self._text_request(system, prompt, model, max_tokens, False)
        async with self._slots:
            async for piece in self._router.stream(request):
                yield piece

    async def image(self, prompt: str) -> Image:
        request = ImageRequest(
            model=self._request.image_model,
            prompt=prompt,
            size=self._request.preset.image_size,
            prefer=self._request.preset.provider,
        )
        async with self._slots:
            reply = await self._router.image(request)
        self._book(reply)
        return reply.value


@dataclass(slots=True)
class SceneContext:
    request: SceneRequest
    llm: RunLLM
    # Each finished step's result, by step name (None for skipped or failed ones).
    results: dict[str, Any] = field(default_factory=dict)
