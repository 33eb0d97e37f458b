"""The LLM router: picks providers for a model, retries, falls back, paces and accounts.

Order: the request's preferred provider first (when configured and it serves the model),
then every other provider that serves it, in configured order. Each gets up to
`max_retries` retries on retryable errors (exponential backoff, at least the provider's
Retry-After); a non-retryable error moves on to the next provider at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from tollhouse.config import Settings
from tollhouse.generation.llm.base import (
    Image,
    ImageRequest,
    M,
    Provider,
    ProviderError,
    Reply,
    TextRequest,
    Usage,
)
from tollhouse.kit.errors import ServiceUnavailable

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

log = structlog.get_logger("tollhouse.llm")

# A provider asking us to wait longer than this is as good as down for this request.
MAX_RETRY_AFTER_SECONDS = 60.0


class NoLLMProvider(ServiceUnavailable):
    code = "no_llm_provider"
    message = (
        "No LLM provider is configured. Set OPENROUTER_API_KEY, or LLM_BASE_URL (+ LLM_API_KEY) "
        "for any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio), "
        "or GOOGLE_API_KEY."
    )


class LLMUnavailable(Exception):
    """Every provider that serves the model failed (or none serves it)."""


class RateLimiter:
    """A token bucket of `per_minute` requests (0 = unlimited); `acquire` waits, never fails."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = float(per_minute)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        # Waiters queue on the lock, so they are served in arrival order.
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self._rate <= 0:
            return
        async with self._lock:
            while True:
                now = self._clock()
                elapsed = max(0.0, now - self._updated)
                self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self._rate)


class LLMMetrics:
    """The router's Prometheus metrics, on the registry the app serves at /metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.calls = Counter(
            "tollhouse_llm_calls_total",
            "LLM provider attempts by kind and outcome (ok, retryable, failed).",
            ["provider", "kind", "outcome"],
            registry=registry,
        )
        self.tokens = Counter(
            "tollhouse_llm_tokens_total",
            "LLM tokens by provider and direction (input, output).",
            ["provider", "direction"],
            registry=registry,
        )
        self.latency = Histogram(
            "tollhouse_llm_latency_seconds",
            "Latency of successful LLM calls.",
            ["provider", "kind"],
            registry=registry,
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160),
        )

    def success(self, provider: str, kind: str, seconds: float, usage: Usage) -> None:
        self.calls.labels(provider, kind, "ok").inc()
        self.latency.labels(provider, kind).observe(seconds)
        self.tokens.labels(provider, "input").inc(usage.input_tokens)
        self.tokens.labels(provider, "output").inc(usage.output_tokens)

    def failure(self, provider: str, kind: str, error: ProviderError) -> None:
        self.calls.labels(provider, kind, "retryable" if error.retryable else "failed").inc()


def served_as(provider: Provider, model: str, kind: str) -> str | None:
    """The id `provider` is sent for `model` in a `kind` ("text" | "image") call, or None.

    A provider may map image ids differently (the compatible server's LLM_IMAGE_MODEL)."""
    serves_image = getattr(provider, "serves_image", None)
    if kind == "image" and callable(serves_image):
        served: str | None = serves_image(model)
        return served
    return provider.serves(model)


class LLMRouter:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        max_retries: int,
        backoff_seconds: float,
        requests_per_minute: int,
        sleep: Sleep = asyncio.sleep,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._providers = list(providers)
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._sleep = sleep
        # Pacing waits for real even when `sleep` (the retry backoff's) is a test's fake.
        self._limiters = {p.name: RateLimiter(requests_per_minute) for p in self._providers}
        # Its own registry unless the app hands over the one /metrics serves.
        self.metrics = LLMMetrics(registry or CollectorRegistry())

    @property
    def configured(self) -> bool:
        return bool(self._providers)

    @property
    def names(self) -> list[str]:
        return [provider.name for provider in self._providers]

    def _candidates(self, model: str, prefer: str | None, kind: str) -> list[tuple[Provider, str]]:
        if not self._providers:
            raise NoLLMProvider()
        ordered = sorted(self._providers, key=lambda p: p.name != prefer)  # stable
        candidates = []
        for provider in ordered:
            served = served_as(provider, model, kind)
            if served is not None:
                candidates.append((provider, served))
        if not candidates:
            raise LLMUnavailable(f"no configured provider ({', '.join(self.names)}) serves {model}")
        return candidates

    def route(self, model: str, prefer: str | None, kind: str = "text") -> tuple[str, str] | None:
        """(provider, model id it is sent as) of the first call for `model`; None when no
        configured provider serves it."""
        try:
            provider, served = self._candidates(model, prefer, kind)[0]
        except (NoLLMProvider, LLMUnavailable):
            return None
        return provider.name, served

    def _delay(self, attempt: int, error: ProviderError) -> float:
        delay = self._backoff * 2.0**attempt
        delay += random.uniform(0, delay * 0.1)  # noqa: S311 - jitter, not a secret
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, MAX_RETRY_AFTER_SECONDS))
        return delay

    def _failed(
        self,
        provider: Provider,
        model: str,
        kind: str,
        attempt: int,
        error: ProviderError,
        *,
        final: bool = False,
    ) -> bool:
        """Book a failed attempt; True when the same provider should be tried again."""
        self.metrics.failure(provider.name, kind, error)
        again = error.retryable and attempt < self._max_retries and not final
        log.warning(
            "llm_attempt_failed",
            provider=provider.name,
            model=model,
            kind=kind,
            attempt=attempt + 1,
            status=error.status,
            retryable=error.retryable,
            will_retry=again,
            error=str(error),
        )
        return again

    async def _call(
        self,
        kind: str,
        model: str,
        prefer: str | None,
        call: Callable[[Provider, str], Awaitable[tuple[T, Usage]]],
    ) -> Reply[T]:
        attempts = 0
        last: ProviderError | None = None
        for provider, served in self._candidates(model, prefer, kind):
            for attempt in range(self._max_retries + 1):
                attempts += 1
                await self._limiters[provider.name].acquire()
                started = time.perf_counter()
                try:
                    value, usage = await call(provider, served)
                except ProviderError as error:
                    last = error
                    if not self._failed(provider, served, kind, attempt, error):
                        break
                    await self._sleep(self._delay(attempt, error))
                    continue
                seconds = time.perf_counter() - started
                self.metrics.success(provider.name, kind, seconds, usage)
                return Reply(
                    value=value,
                    provider=provider.name,
                    model=served,
                    latency_ms=round(seconds * 1000),
                    usage=usage,
                    attempts=attempts,
                )
        raise LLMUnavailable(f"every LLM provider failed for {model}; last error: {last}")

    async def structured(self, request: TextRequest, schema: type[M]) -> Reply[M]:
        return await self._call(
            "structured",
            request.model,
            request.prefer,
            lambda provider, model: provider.structured(request, model, schema),
        )

    async def text(self, request: TextRequest) -> Reply[str]:
        return await self._call(
            "text",
            request.model,
            request.prefer,
            lambda provider, model: provider.text(request, model),
        )

    async def image(self, request: ImageRequest) -> Reply[Image]:
        return await self._call(
            "image",
            request.model,
            request.prefer,
            lambda provider, model: provider.image(request, model),
        )

    async def stream(self, request: TextRequest) -> AsyncIterator[str]:
        """Text as it comes. Retries and fallbacks happen only before the first piece;
        a stream that breaks after it raises LLMUnavailable."""
        last: ProviderError | None = None
        for provider, served in self._candidates(request.model, request.prefer, "stream"):
            for attempt in range(self._max_retries + 1):
                await self._limiters[provider.name].acquire()
                started = time.perf_counter()
                pieces = provider.stream(request, served)
                begun = False
                try:
                    async for piece in pieces:
                        begun = True
                        yield piece
                except ProviderError as error:
                    last = error
                    if not self._failed(provider, served, "stream", attempt, error, final=begun):
                        if begun:
                            raise LLMUnavailable(f"the stream broke: {error}") from error
                        break
                    await self._sleep(self._delay(attempt, error))
                    continue
                finally:
                    aclose = getattr(pieces, "aclose", None)
                    if aclose is not None:
                        await aclose()
                seconds = time.perf_counter() - started
                self.metrics.success(provider.name, "stream", seconds, Usage())
                return
        raise LLMUnavailable(f"every LLM provider failed for {request.model}; last error: {last}")

    @property
    def providers(self) -> list[Provider]:
        return list(self._providers)

    async def close(self) -> None:
        for provider in self._providers:
            await provider.close()


def router_from_settings(
    settings: Settings, *, registry: CollectorRegistry | None = None
) -> LLMRouter:
    """Providers in fallback order: Google, OpenRouter, an OpenAI-compatible server.

    The SDKs are imported only for configured providers (each costs ~1 s at start-up).
    """
    from tollhouse.generation.llm.openai_compatible import OpenAICompatibleProvider

    timeout = settings.llm_timeout_seconds
    providers: list[Provider] = []
    if settings.google_api_key is not None:
        from tollhouse.generation.llm.google import GoogleProvider

        providers.append(
            GoogleProvider(
                api_key=settings.google_api_key.get_secret_value(),
                base_url=settings.google_api_base_url,
                timeout_seconds=timeout,
            )
        )
    if settings.openrouter_api_key is not None:
        providers.append(
            OpenAICompatibleProvider(
                "openrouter",
                base_url=settings.openrouter_base_url,
                api_key=settings.openrouter_api_key.get_secret_value(),
                timeout_seconds=timeout,
            )
        )
    if settings.llm_base_url:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        providers.append(
            OpenAICompatibleProvider(
                "compatible",
                base_url=settings.llm_base_url,
                api_key=key,
                timeout_seconds=timeout,
                text_model=settings.llm_model,
                image_model=settings.llm_image_model,
            )
        )
    return LLMRouter(
        providers,
        max_retries=settings.llm_max_retries,
        backoff_seconds=settings.llm_retry_backoff_seconds,
        requests_per_minute=settings.llm_requests_per_minute,
        registry=registry,
    )
