"""The models this server can run (flash-contract §1.7 `/models`).

Two sources: what configuration names (every preset's models, the permissive defaults,
LLM_MODEL / LLM_IMAGE_MODEL) on each configured provider that serves them — known without
any network, so the listing works offline — and, when asked (`fetch_remote`, `/models/free`),
the providers' own catalogues, cached for MODELS_CACHE_SECONDS. A provider whose catalogue
fails is left out of that refresh, never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from tollhouse.generation.llm.base import ProviderError, RemoteModel
from tollhouse.generation.llm.router import LLMRouter, served_as
from tollhouse.generation.presets import Preset
from tollhouse.generation.provenance import permissiveness
from tollhouse.generation.schemas import ModelInfo, ModelPricing

log = structlog.get_logger("tollhouse.generation")

Clock = Callable[[], float]


def is_free(model: RemoteModel | None, model_id: str) -> bool:
    if model_id.endswith(":free"):
        return True
    return (
        model is not None
        and model.prompt_price == 0
        and model.completion_price == 0
        and model.prompt_price is not None
    )


@dataclass(slots=True)
class _Catalogue:
    models: dict[str, list[RemoteModel]] = field(default_factory=dict)
    fetched_at: float | None = None


class ModelRegistry:
    def __init__(
        self,
        router: LLMRouter,
        presets: Mapping[str, Preset],
        extra_text: Iterable[str | None],
        extra_image: Iterable[str | None],
        *,
        cache_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._router = router
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._catalogue = _Catalogue()
        self._lock = asyncio.Lock()
        text = {m for p in presets.values() for m in (p.text_model, p.judge_model) if m}
        self._text = sorted(text | {m for m in extra_text if m})
        self._image = sorted(
            {p.image_model for p in presets.values()} | {m for m in extra_image if m}
        )
        # Latencies measured by /eval (ms, most recent per model): what "fastest" is based on.
        self.latencies: dict[str, int] = {}

    @property
    def provider_names(self) -> list[str]:
        return self._router.names

    def _configured(self) -> list[ModelInfo]:
        out: list[ModelInfo] = []
        for capability, models in (("text", self._text), ("image", self._image)):
            for model in models:
                for provider in self._router.providers:
                    # As the router will call it: image ids may map differently.
                    served = served_as(provider, model, capability)
                    if served is not None:
                        out.append(self._info(model, provider.name, served, capability, None))
        return out

    def _info(
        self,
        model_id: str,
        provider: str,
        served: str,
        capability: str,
        remote: RemoteModel | None,
        *,
        configured: bool = True,
    ) -> ModelInfo:
        pricing = None
        if remote is not None and remote.prompt_price is not None:
            pricing = ModelPricing(prompt=remote.prompt_price, completion=remote.completion_price)
        return ModelInfo(
            id=model_id,
            name=remote.name if remote and remote.name else model_id,
            provider=provider,
            served_as=served,
            capabilities=[capability],
            context_length=remote.context_length if remote else None,
            is_free=is_free(remote, model_id),
            pricing=pricing,
            permissiveness=permissiveness(model_id),
            configured=configured,
        )

    async def _refresh(self) -> bool:
        """Fetch the providers' catalogues unless the cache is fresh; True when cached."""
        async with self._lock:
            fetched = self._catalogue.fetched_at
            if fetched is not None and self._clock() - fetched < self._cache_seconds:
                return True
            models: dict[str, list[RemoteModel]] = {}
            for provider in self._router.providers:
                try:
                    models[provider.name] = await provider.list_models()
                except ProviderError as exc:
                    log.warning("model_catalogue_failed", provider=provider.name, error=str(exc))
                    models[provider.name] = self._catalogue.models.get(provider.name, [])
            self._catalogue = _Catalogue(models, self._clock())
            return False

    async def listing(self, *, fetch_remote: bool) -> tuple[list[ModelInfo], bool]:
        """Configured models (with what the catalogues add), then the catalogues' others."""
        cached = True
        if fetch_remote:
            cached = await self._refresh()
        remote = {
            (provider, model.id): model
            for provider, models in self._catalogue.models.items()
            for model in models
        }
        out: list[ModelInfo] = []
        seen: set[tuple[str, str]] = set()
        for info in self._configured():
            key = (info.provider, info.served_as)
            seen.add(key)
            found = remote.get(key)
            out.append(
                self._info(info.id, info.provider, info.served_as, info.capabilities[0], found)
                if found
                else info
            )
        for (provider, model_id), model in sorted(remote.items()):
            if (provider, model_id) not in seen:
                capability = "image" if "image" in model.output_modalities else "text"
                out.append(
                    self._info(model_id, provider, model_id, capability, model, configured=False)
                )
        return out, cached
