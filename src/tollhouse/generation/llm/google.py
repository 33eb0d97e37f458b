"""A provider on Google's Gemini API through `google-genai`.

Serves "google/gemini-*" (sent without the prefix) and bare "gemini-*" / "imagen-*" ids.
The SDK does not retry by default; the router does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from google import genai
from google.genai import errors, types
from pydantic import ValidationError

from tollhouse.generation.llm.base import (
    Image,
    ImageRequest,
    M,
    ProviderError,
    RemoteModel,
    Sampling,
    TextRequest,
    Usage,
    json_schema,
)
from tollhouse.generation.llm.openai_compatible import retry_after, strip_fences

# Gemini 2.5 takes a token budget; Gemini 3 takes a level.
_THINKING_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}


def _provider_error(exc: Exception) -> ProviderError:
    if isinstance(exc, errors.APIError):
        code = exc.code
        error = ProviderError(
            f"HTTP {code}: {exc.message or exc.status}",
            retryable=code == 429 or code >= 500,
            status=code,
        )
        error.retry_after = retry_after(getattr(exc.response, "headers", None))
        return error
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)


# What a call can raise that we turn into ProviderError: API answers and network failures.
_CALL_ERRORS = (errors.APIError, httpx.TransportError, TimeoutError, ConnectionError)


def _thinking(model: str, level: str | None) -> types.ThinkingConfig | None:
    if level is None:
        return None
    if model.startswith("gemini-3") and level.upper() in types.ThinkingLevel.__members__:
        return types.ThinkingConfig(thinking_level=types.ThinkingLevel[level.upper()])
    if model.startswith("gemini-2.5") and level in _THINKING_BUDGETS:
        return types.ThinkingConfig(thinking_budget=_THINKING_BUDGETS[level])
    return None  # older families do not think


def _config(request: TextRequest, model: str, **extra: Any) -> types.GenerateContentConfig:
    sampling: Sampling = request.sampling
    return types.GenerateContentConfig(
        system_instruction=request.system or None,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_output_tokens=sampling.max_tokens,
        stop_sequences=list(sampling.stop) or None,
        presence_penalty=sampling.presence_penalty,
        frequency_penalty=sampling.frequency_penalty,
        thinking_config=_thinking(model, sampling.thinking_level),
        tools=[types.Tool(google_search=types.GoogleSearch())] if request.grounded else None,
        **extra,
    )


def _usage(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if metadata is None:
        return Usage()
    output = (metadata.candidates_token_count or 0) + (metadata.thoughts_token_count or 0)
    return Usage(metadata.prompt_token_count or 0, output)


def _parts(response: types.GenerateContentResponse) -> list[types.Part]:
    if not response.candidates or response.candidates[0].content is None:
        return []
    return list(response.candidates[0].content.parts or [])


def _text(response: types.GenerateContentResponse) -> str:
    # Thought summaries are not the answer.
    return "".join(part.text for part in _parts(response) if part.text and not part.thought)


class GoogleProvider:
    name = "google"

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        http_options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_seconds * 1000),  # milliseconds
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=api_key, http_options=http_options)

    def serves(self, model: str) -> str | None:
        bare = model.removeprefix("google/")
        return bare if bare.startswith(("gemini-", "imagen-")) else None

    async def _generate(
        self, model: str, prompt: str, config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        try:
            return await self._client.aio.models.generate_content(
                model=model, contents=prompt, config=config
            )
        except _CALL_ERRORS as exc:
            raise _provider_error(exc) from exc

    async def structured(
        self, request: TextRequest, model: str, schema: type[M]
    ) -> tuple[M, Usage]:
        wanted = json_schema(schema)
        prompt = request.prompt
        if request.grounded:
            # Search grounding and a response schema do not combine (Gemini 2.5): ask in words.
            prompt += (
                "\n\nAnswer with one JSON object only, no prose, matching this JSON schema:\n"
                + json.dumps(wanted)
            )
            config = _config(request, model)
        else:
            config = _config(
                request,
                model,
                response_mime_type="application/json",
                response_json_schema=wanted,
            )
        response = await self._generate(model, prompt, config)
        content = _text(response)
        if not content:
            raise ProviderError("the reply is empty", retryable=True)
        try:
            value = schema.model_validate_json(strip_fences(content))
        except ValidationError as exc:
            message = f"the reply does not match {schema.__name__}: {exc.error_count()} errors"
            raise ProviderError(message, retryable=True) from exc
        return value, _usage(response.usage_metadata)

    async def text(self, request: TextRequest, model: str) -> tuple[str, Usage]:
        response = await self._generate(model, request.prompt, _config(request, model))
        content = _text(response)
        if not content:
            raise ProviderError("the reply is empty", retryable=True)
        return content, _usage(response.usage_metadata)

    async def stream(self, request: TextRequest, model: str) -> AsyncIterator[str]:
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                model=model, contents=request.prompt, config=_config(request, model)
            )
            async for chunk in chunks:
                text = _text(chunk)
                if text:
                    yield text
        except _CALL_ERRORS as exc:
            raise _provider_error(exc) from exc

    async def image(self, request: ImageRequest, model: str) -> tuple[Image, Usage]:
        # Imagen's own endpoint (`generate_images`) is Vertex-only in this SDK and deprecated;
        # generate_content serves image models on the Developer API.
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE", "TEXT"],
            image_config=types.ImageConfig(image_size=request.size) if request.size else None,
        )
        response = await self._generate(model, request.prompt, config)
        for part in _parts(response):
            if part.inline_data is not None and part.inline_data.data:
                content_type = part.inline_data.mime_type or "image/png"
                return Image(part.inline_data.data, content_type), _usage(response.usage_metadata)
        raise ProviderError("the reply carries no image", retryable=True)

    async def list_models(self) -> list[RemoteModel]:
        try:
            pager = await self._client.aio.models.list()
            listed = [model async for model in pager]
        except Exception as exc:
            raise _provider_error(exc) from exc
        return [
            RemoteModel(
                id=(model.name or "").removeprefix("models/"),
                name=model.display_name,
                context_length=model.input_token_limit,
                output_modalities=("image",) if "image" in (model.name or "") else ("text",),
            )
            for model in listed
            if model.name
        ]

    async def close(self) -> None:
        await self._client.aio.aclose()
