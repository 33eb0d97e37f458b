"""A provider on the OpenAI chat-completions protocol: OpenRouter, or any compatible server
(vLLM, Ollama, llama.cpp, LM Studio) at LLM_BASE_URL.

The SDK's own retries are off (`max_retries=0`): the router retries and falls back.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
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

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)


def strip_fences(content: str) -> str:
    """Models sometimes wrap JSON in ``` fences although a schema was asked for."""
    match = _FENCE.match(content)
    return match.group(1) if match else content.strip()


def retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from LLM APIs, and the backoff covers it


def _price(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _remote_model(model_id: str, extra: dict[str, Any]) -> RemoteModel:
    listed = extra.get("pricing")
    pricing: dict[str, Any] = listed if isinstance(listed, dict) else {}
    architecture = extra.get("architecture")
    modalities = architecture.get("output_modalities") if isinstance(architecture, dict) else None
    context = extra.get("context_length")
    return RemoteModel(
        id=model_id,
        name=extra.get("name") if isinstance(extra.get("name"), str) else None,
        context_length=context if isinstance(context, int) else None,
        prompt_price=_price(pricing.get("prompt")),
        completion_price=_price(pricing.get("completion")),
        output_modalities=tuple(modalities) if isinstance(modalities, list) else ("text",),
    )


def _provider_error(exc: openai.OpenAIError) -> ProviderError:
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return ProviderError(f"{type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        error = ProviderError(
            f"HTTP {status}: {exc.message}", retryable=status == 429 or status >= 500, status=status
        )
        error.retry_after = retry_after(exc.response.headers)
        return error
    return ProviderError(f"{type(exc).__name__}: {exc}", retryable=False)


def _usage(response: ChatCompletion) -> Usage:
    if response.usage is None:
        return Usage()
    return Usage(response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0)


def _sampling_kwargs(sampling: Sampling, *, openrouter: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name in ("temperature", "max_tokens", "top_p", "frequency_penalty", "presence_penalty"):
        value = getattr(sampling, name)
        if value is not None:
            kwargs[name] = value
    if sampling.stop:
        kwargs["stop"] = list(sampling.stop)
    # Not in OpenAI's own API; OpenRouter and vLLM read them from the body.
    extra: dict[str, Any] = {}
    if sampling.top_k is not None:
        extra["top_k"] = sampling.top_k
    if sampling.repetition_penalty is not None:
        extra["repetition_penalty"] = sampling.repetition_penalty
    if sampling.thinking_level is not None:
        # OpenRouter's unified reasoning object; other servers follow OpenAI's parameter.
        if openrouter:
            extra["reasoning"] = {"effort": sampling.thinking_level}
        else:
            kwargs["reasoning_effort"] = sampling.thinking_level
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _messages(request: TextRequest) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    return messages


def _first_image(response: ChatCompletion) -> Image:
    if not response.choices:
        raise ProviderError("the reply has no choices", retryable=True)
    # OpenRouter's image output is not in the SDK's types: `message.images[].image_url.url`.
    extra = response.choices[0].message.model_extra or {}
    for item in extra.get("images") or []:
        url = (item.get("image_url") or {}).get("url", "") if isinstance(item, dict) else ""
        match = _DATA_URL.match(url)
        if match:
            try:
                return Image(base64.b64decode(match["data"], validate=True), match["type"])
            except binascii.Error as exc:
                raise ProviderError(f"undecodable image: {exc}", retryable=True) from exc
    raise ProviderError("the reply carries no image", retryable=True)


def _image_body(request: ImageRequest, *, openrouter: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"modalities": ["image", "text"]}
    if request.size and openrouter:
        body["image_config"] = {"image_size": request.size}  # for Gemini image models
    return body


class OpenAICompatibleProvider:
    """`name="openrouter"` serves "vendor/model" ids; `name="compatible"` serves every id,
    sending `text_model` / `image_model` instead when they are set."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        timeout_seconds: float,
        text_model: str | None = None,
        image_model: str | None = None,
    ) -> None:
        self.name = name
        self._text_model = text_model
        self._image_model = image_model
        self._client = AsyncOpenAI(
            # Local servers often need no key, but the SDK insists on one.
            api_key=api_key or "none",
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,
        )

    def serves(self, model: str) -> str | None:
        if self.name == "openrouter":
            if model.startswith("gemini-"):
                return f"google/{model}"
            return model if "/" in model else None
        return self._text_model or model

    def serves_image(self, model: str) -> str | None:
        """Like `serves`, for image calls (the router asks this one when a provider has it)."""
        if self.name == "compatible":
            return self._image_model or model
        return self.serves(model)

    def _sampling(self, sampling: Sampling) -> dict[str, Any]:
        return _sampling_kwargs(sampling, openrouter=self.name == "openrouter")

    async def _create(self, **kwargs: Any) -> ChatCompletion:
        try:
            response: ChatCompletion = await self._client.chat.completions.create(**kwargs)
        except openai.OpenAIError as exc:
            raise _provider_error(exc) from exc
        return response

    async def structured(
        self, request: TextRequest, model: str, schema: type[M]
    ) -> tuple[M, Usage]:
        response = await self._create(
            model=model,
            messages=_messages(request),
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": schema.__name__,
                    "schema": json_schema(schema),
                    # Strict mode rejects common Pydantic schemas (defaults, open objects).
                    "strict": False,
                },
            },
            **self._sampling(request.sampling),
        )
        content = response.choices[0].message.content if response.choices else None
        if not content:
            raise ProviderError("the reply is empty", retryable=True)
        try:
            value = schema.model_validate_json(strip_fences(content))
        except ValidationError as exc:
            # Sampling again usually fixes it.
            message = f"the reply does not match {schema.__name__}: {exc.error_count()} errors"
            raise ProviderError(message, retryable=True) from exc
        return value, _usage(response)

    async def text(self, request: TextRequest, model: str) -> tuple[str, Usage]:
        response = await self._create(
            model=model,
            messages=_messages(request),
            **self._sampling(request.sampling),
        )
        content = response.choices[0].message.content if response.choices else None
        if content is None:
            raise ProviderError("the reply is empty", retryable=True)
        return content, _usage(response)

    async def stream(self, request: TextRequest, model: str) -> AsyncIterator[str]:
        try:
            chunks = await self._client.chat.completions.create(
                model=model,
                messages=_messages(request),
                stream=True,
                **self._sampling(request.sampling),
            )
            async with chunks:
                async for chunk in chunks:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
        except openai.OpenAIError as exc:
            raise _provider_error(exc) from exc

    async def image(self, request: ImageRequest, model: str) -> tuple[Image, Usage]:
        response = await self._create(
            model=model,
            messages=[{"role": "user", "content": request.prompt}],
            extra_body=_image_body(request, openrouter=self.name == "openrouter"),
        )
        return _first_image(response), _usage(response)

    async def list_models(self) -> list[RemoteModel]:
        """`GET /models`; OpenRouter adds name, context length, pricing and modalities."""
        try:
            page = await self._client.models.list()
        except openai.OpenAIError as exc:
            raise _provider_error(exc) from exc
        return [_remote_model(model.id, model.model_extra or {}) for model in page.data]

    async def close(self) -> None:
        await self._client.close()
