"""The LLM layer through the real `openai` and `google-genai` SDKs against the local peers
(llm_peer.py): structured output, text, streams, images, retries, fallback and pacing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from llm_peer import LLMPeer
from tollhouse.config import Settings
from tollhouse.generation.llm.base import ImageRequest, Provider, Sampling, TextRequest
from tollhouse.generation.llm.google import GoogleProvider
from tollhouse.generation.llm.openai_compatible import OpenAICompatibleProvider
from tollhouse.generation.llm.router import (
    LLMRouter,
    LLMUnavailable,
    NoLLMProvider,
    RateLimiter,
    router_from_settings,
)

pytestmark = pytest.mark.anyio

GEMINI = "google/gemini-2.5-flash"


class Place(BaseModel):
    name: str = Field(min_length=2)
    era: int = Field(ge=1200, le=1900)


class Beat(BaseModel):
    title: str = Field(min_length=3)
    mood: Literal["calm", "tense"]
    intensity: float = Field(gt=0, le=5)
    tags: list[str] = Field(min_length=2)
    note: str | None
    place: Place


BEAT = {
    "title": "The Gate",
    "mood": "tense",
    "intensity": 3.5,
    "tags": ["night", "rain"],
    "note": None,
    "place": {"name": "Ghent", "era": 1540},
}


class Sleeps:
    """A `sleep` that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def google(peer: LLMPeer, timeout: float = 5) -> GoogleProvider:
    return GoogleProvider(api_key="g-key", base_url=peer.gemini_base_url, timeout_seconds=timeout)


def openrouter(peer: LLMPeer, timeout: float = 5) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        "openrouter", base_url=peer.openai_base_url, api_key="or-key", timeout_seconds=timeout
    )


def compatible(
    peer: LLMPeer, text_model: str | None = None, image_model: str | None = None
) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        "compatible",
        base_url=peer.openai_base_url,
        api_key=None,
        timeout_seconds=5,
        text_model=text_model,
        image_model=image_model,
    )


MakeRouter = Callable[..., LLMRouter]


@pytest.fixture
async def make_router() -> AsyncIterator[MakeRouter]:
    routers: list[LLMRouter] = []

    def factory(*providers: Provider, retries: int = 2, sleep: Sleeps | None = None) -> LLMRouter:
        router = LLMRouter(
            providers,
            max_retries=retries,
            backoff_seconds=0.01,
            requests_per_minute=0,
            sleep=sleep or Sleeps(),
        )
        routers.append(router)
        return router

    yield factory
    for router in routers:
        await router.close()


def ask(
    model: str = GEMINI,
    *,
    sampling: Sampling | None = None,
    grounded: bool = False,
    prefer: str | None = None,
) -> TextRequest:
    return TextRequest(
        model=model,
        system="You write scenes.",
        prompt="A gate at night.",
        sampling=sampling or Sampling(),
        grounded=grounded,
        prefer=prefer,
    )


PROVIDERS: dict[str, Callable[[LLMPeer], Provider]] = {"google": google, "openrouter": openrouter}


@pytest.mark.parametrize("name", ["google", "openrouter"])
async def test_structured_output_is_generated_from_the_schema_and_parsed(
    name: str, llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    router = make_router(PROVIDERS[name](llm_peer))
    reply = await router.structured(ask(), Beat)

    assert isinstance(reply.value, Beat)
    assert reply.provider == name
    assert reply.model == ("gemini-2.5-flash" if name == "google" else GEMINI)
    assert reply.attempts == 1
    assert reply.usage.input_tokens > 0
    assert reply.usage.output_tokens > 0
    (call,) = llm_peer.script.calls
    assert (call.kind, call.schema_name) == ("structured", "Beat")
    assert call.system == "You write scenes."
    assert call.prompt == "A gate at night."
    assert call.protocol == ("gemini" if name == "google" else "openai")


@pytest.mark.parametrize("name", ["google", "openrouter"])
async def test_scripted_structured_value_and_sampling_reach_the_provider(
    name: str, llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    llm_peer.script.respond("Beat", lambda call: {**BEAT, "title": call.prompt[:9]})
    sampling = Sampling(
        temperature=0.3, max_tokens=200, top_p=0.9, top_k=40, stop=("END",), thinking_level="low"
    )
    router = make_router(PROVIDERS[name](llm_peer))

    reply = await router.structured(ask(sampling=sampling), Beat)

    assert reply.value == Beat.model_validate({**BEAT, "title": "A gate at"})
    body = llm_peer.script.calls[0].body
    if name == "google":
        config = body["generationConfig"]
        assert config["temperature"] == 0.3
        assert config["topK"] == 40
        assert config["maxOutputTokens"] == 200
        assert config["stopSequences"] == ["END"]
        assert config["responseMimeType"] == "application/json"
        assert list(config["thinkingConfig"].values()) == [1024]  # the SDK sends snake_case
    else:
        assert (body["temperature"], body["top_k"], body["max_tokens"]) == (0.3, 40, 200)
        assert body["stop"] == ["END"]
        assert body["response_format"]["json_schema"]["strict"] is False
        assert body["reasoning"] == {"effort": "low"}


async def test_fenced_json_is_accepted(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.respond("Beat", f"```json\n{json.dumps(BEAT)}\n```")
    reply = await make_router(openrouter(llm_peer)).structured(ask(), Beat)
    assert reply.value.title == "The Gate"


async def test_grounded_google_asks_for_json_in_the_prompt_with_search(
    gemini_peer: LLMPeer, make_router: MakeRouter
) -> None:
    gemini_peer.script.respond("text", json.dumps(BEAT))
    reply = await make_router(google(gemini_peer)).structured(ask(grounded=True), Beat)

    assert reply.value.place.name == "Ghent"
    body = gemini_peer.script.calls[0].body
    assert "responseJsonSchema" not in body.get("generationConfig", {})
    assert body["tools"] == [{"googleSearch": {}}]
    assert "JSON schema" in gemini_peer.script.calls[0].prompt


@pytest.mark.parametrize("name", ["google", "openrouter"])
async def test_text_and_stream(name: str, llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.respond("text", "the rain keeps falling")
    router = make_router(PROVIDERS[name](llm_peer))

    reply = await router.text(ask())
    pieces = [piece async for piece in router.stream(ask())]

    assert reply.value == "the rain keeps falling"
    assert reply.usage.output_tokens > 0
    assert len(pieces) == 4
    assert "".join(pieces) == "the rain keeps falling"
    assert [call.kind for call in llm_peer.script.calls] == ["text", "stream"]


@pytest.mark.parametrize(
    ("name", "model"),
    [("google", GEMINI), ("google", "imagen-4.0-generate-001"), ("openrouter", GEMINI)],
)
async def test_image_bytes(
    name: str, model: str, llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    router = make_router(PROVIDERS[name](llm_peer))
    reply = await router.image(ImageRequest(model=model, prompt="a gate", size="2K"))

    assert reply.value.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert reply.value.content_type == "image/png"
    (call,) = llm_peer.script.calls
    assert (call.kind, call.prompt) == ("image", "a gate")


async def test_scripted_image_and_latency(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.respond("image", (b"RIFFfakewebp", "image/webp"))
    llm_peer.script.latency = 0.2
    reply = await make_router(openrouter(llm_peer)).image(ImageRequest(GEMINI, "a gate"))

    assert reply.value.data == b"RIFFfakewebp"
    assert reply.value.content_type == "image/webp"
    assert reply.latency_ms >= 200


async def test_retry_on_503_then_success(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.fail("*", 503)
    sleeps = Sleeps()
    router = make_router(google(llm_peer), sleep=sleeps)

    reply = await router.structured(ask(), Beat)

    assert (reply.provider, reply.attempts) == ("google", 2)
    assert len(sleeps.delays) == 1
    assert 0.01 <= sleeps.delays[0] < 0.02
    value = router.metrics.registry.get_sample_value(
        "tollhouse_llm_calls_total", {"provider": "google", "kind": "structured", "outcome": "ok"}
    )
    assert value == 1


async def test_429_retry_after_is_honoured(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.fail("text", 429, retry_after=3)
    sleeps = Sleeps()
    reply = await make_router(openrouter(llm_peer), sleep=sleeps).text(ask())

    assert reply.attempts == 2
    assert sleeps.delays == [3.0]


async def test_fallback_after_max_retries(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.fail("*", 503, times=5, protocol="gemini")
    sleeps = Sleeps()
    router = make_router(google(llm_peer), openrouter(llm_peer), retries=2, sleep=sleeps)

    reply = await router.structured(ask(), Beat)

    assert (reply.provider, reply.attempts) == ("openrouter", 4)
    assert len(sleeps.delays) == 2
    assert sleeps.delays[1] > sleeps.delays[0]  # exponential
    assert [c.protocol for c in llm_peer.script.calls] == ["gemini"] * 3 + ["openai"]


async def test_non_retryable_error_falls_back_at_once(
    llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    llm_peer.script.fail("*", 400)
    sleeps = Sleeps()
    router = make_router(google(llm_peer), openrouter(llm_peer), sleep=sleeps)

    reply = await router.text(ask())

    assert (reply.provider, reply.attempts) == ("openrouter", 2)
    assert sleeps.delays == []


async def test_all_failing_raises_llm_unavailable(
    llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    llm_peer.script.fail("*", 500, times=100)
    router = make_router(google(llm_peer), openrouter(llm_peer), retries=1)

    with pytest.raises(LLMUnavailable, match="500"):
        await router.structured(ask(), Beat)
    assert len(llm_peer.script.calls) == 4


async def test_timeout_is_retryable(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    llm_peer.script.latency = 5  # far past the timeout, however slow the machine
    router = make_router(openrouter(llm_peer, timeout=0.2), retries=1)

    with pytest.raises(LLMUnavailable, match="Timeout"):
        await router.text(ask())
    assert len(llm_peer.script.calls) == 2


@pytest.mark.parametrize("name", ["google", "openrouter"])
async def test_invalid_json_is_retried(
    name: str, llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    answers = iter(['{"title": "oops"', {**BEAT, "mood": "sleepy"}, BEAT])
    llm_peer.script.respond("Beat", lambda _call: next(answers))
    sleeps = Sleeps()

    reply = await make_router(PROVIDERS[name](llm_peer), sleep=sleeps).structured(ask(), Beat)

    assert reply.attempts == 3
    assert reply.value.mood == "tense"
    assert len(sleeps.delays) == 2


async def test_stream_retries_before_the_first_piece(
    llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    llm_peer.script.fail("text", 503, protocol="gemini")
    router = make_router(google(llm_peer), openrouter(llm_peer), retries=0)

    pieces = [piece async for piece in router.stream(ask())]

    assert "".join(pieces) == "scripted text"
    assert [c.protocol for c in llm_peer.script.calls] == ["gemini", "openai"]


async def test_prefer_goes_first(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    router = make_router(google(llm_peer), openrouter(llm_peer))

    preferred = await router.text(ask(prefer="openrouter"))
    default = await router.text(ask())
    unknown = await router.text(ask(prefer="nobody"))

    assert [preferred.provider, default.provider, unknown.provider] == [
        "openrouter",
        "google",
        "google",
    ]


async def test_prefer_is_skipped_when_it_cannot_serve_the_model(
    llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    router = make_router(openrouter(llm_peer), google(llm_peer))
    reply = await router.text(ask(model="meta-llama/llama-4-scout", prefer="google"))
    assert reply.provider == "openrouter"


async def test_compatible_server_model_replaces_the_request(
    llm_peer: LLMPeer, make_router: MakeRouter
) -> None:
    router = make_router(compatible(llm_peer, "qwen3:8b", "flux-schnell"))

    text = await router.text(ask())
    image = await router.image(ImageRequest(model=GEMINI, prompt="a gate"))

    assert (text.model, image.model) == ("qwen3:8b", "flux-schnell")
    assert [c.model for c in llm_peer.script.calls] == ["qwen3:8b", "flux-schnell"]


def test_serves_mapping() -> None:
    base = "http://127.0.0.1:9"
    router_ = OpenAICompatibleProvider("openrouter", base_url=base, api_key="k", timeout_seconds=1)
    plain = OpenAICompatibleProvider("compatible", base_url=base, api_key=None, timeout_seconds=1)
    gemini = GoogleProvider(api_key="k", base_url=base, timeout_seconds=1)

    assert router_.serves("gemini-2.5-flash") == "google/gemini-2.5-flash"
    assert router_.serves("meta-llama/llama-4-scout") == "meta-llama/llama-4-scout"
    assert router_.serves("llama3") is None
    assert plain.serves("llama3") == "llama3"
    assert gemini.serves("google/gemini-3-pro-preview") == "gemini-3-pro-preview"
    assert gemini.serves("gemini-2.5-flash") == "gemini-2.5-flash"
    assert gemini.serves("imagen-4.0-generate-001") == "imagen-4.0-generate-001"
    assert gemini.serves("meta-llama/llama-4-scout") is None
    assert gemini.serves("openai/gpt-5") is None


async def test_no_provider_for_the_model(llm_peer: LLMPeer, make_router: MakeRouter) -> None:
    router = make_router(google(llm_peer))
    with pytest.raises(LLMUnavailable, match="serves meta-llama"):
        await router.text(ask(model="meta-llama/llama-4-scout"))
    assert llm_peer.script.calls == []


async def test_rate_limiter_waits_rather_than_fails() -> None:
    now = [0.0]
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    for _ in range(60):
        await limiter.acquire()
    assert waited == []

    await limiter.acquire()  # the bucket is empty: one token per second
    await limiter.acquire()
    assert waited == [pytest.approx(1.0), pytest.approx(1.0)]

    now[0] += 30  # refills 30 tokens
    for _ in range(30):
        await limiter.acquire()
    assert len(waited) == 2


async def test_unlimited_rate_never_waits() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("should not wait")

    limiter = RateLimiter(0, sleep=sleep)
    for _ in range(1000):
        await limiter.acquire()


def _settings(**values: object) -> Settings:
    blank: dict[str, object] = {
        "google_api_key": None,
        "openrouter_api_key": None,
        "llm_base_url": None,
        "llm_api_key": None,
    }
    return Settings(_env_file=None, tollhouse_env="test", **{**blank, **values})  # type: ignore[arg-type]


async def test_router_from_settings_without_keys() -> None:
    router = router_from_settings(_settings())

    assert router.configured is False
    assert router.names == []
    with pytest.raises(NoLLMProvider) as raised:
        await router.text(ask())
    error = raised.value
    assert (error.code, error.status_code) == ("no_llm_provider", 503)
    assert "OPENROUTER_API_KEY" in error.message
    assert "LLM_BASE_URL" in error.message
    assert "GOOGLE_API_KEY" in error.message


async def test_router_from_settings_orders_providers(llm_peer: LLMPeer) -> None:
    settings = _settings(
        google_api_key=SecretStr("g"),
        google_api_base_url=llm_peer.gemini_base_url,
        openrouter_api_key=SecretStr("o"),
        openrouter_base_url=llm_peer.openai_base_url,
        llm_base_url=llm_peer.openai_base_url,
        llm_model="local-model",
        llm_max_retries=0,
    )
    router = router_from_settings(settings)
    try:
        assert router.configured is True
        assert router.names == ["google", "openrouter", "compatible"]
        reply = await router.text(ask(model="mistralai/mistral-small", prefer="compatible"))
        assert (reply.provider, reply.model) == ("compatible", "local-model")
    finally:
        await router.close()
