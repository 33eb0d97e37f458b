"""/api/v1/models: what this server can run, by provider (flash-contract §1.7)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from tollhouse.generation.errors import ModelNotFound
from tollhouse.generation.launch import generations
from tollhouse.generation.model_registry import ModelRegistry
from tollhouse.generation.presets import DEFAULT_PRESET
from tollhouse.generation.schemas import (
    FreeModels,
    ModelInfo,
    ModelList,
    ProviderInfo,
    ProviderList,
)
from tollhouse.identity.caller import GatewayCaller

router = APIRouter(prefix="/api/v1/models", tags=["models"])

KNOWN_PROVIDERS = ("google", "openrouter", "compatible")


def registry(request: Request) -> ModelRegistry:
    return generations(request).models


@router.get("", response_model=ModelList)
async def list_models(
    request: Request,
    _caller: GatewayCaller,
    provider: Annotated[str | None, Query(max_length=40)] = None,
    capability: Literal["text", "image"] | None = None,
    fetch_remote: bool = False,
    free_only: bool = False,
) -> ModelList:
    """Configured models (offline); with `fetch_remote`, the providers' catalogues too."""
    models, cached = await registry(request).listing(fetch_remote=fetch_remote)
    chosen = [
        model
        for model in models
        if (provider is None or model.provider == provider)
        and (capability is None or capability in model.capabilities)
        and (not free_only or model.is_free)
    ]
    return ModelList(models=chosen, total=len(chosen), cached=cached)


@router.get("/providers", response_model=ProviderList)
async def list_providers(request: Request, _caller: GatewayCaller) -> ProviderList:
    domain = generations(request)
    models, _ = await domain.models.listing(fetch_remote=False)
    preset = domain.presets[DEFAULT_PRESET]
    configured = {p.name: p for p in domain.router.providers}
    out = []
    for name in KNOWN_PROVIDERS:
        provider = configured.get(name)
        out.append(
            ProviderInfo(
                provider=name,
                available=provider is not None,
                models_count=sum(1 for model in models if model.provider == name),
                default_text_model=provider.serves(preset.text_model) if provider else None,
                default_image_model=provider.serves(preset.image_model) if provider else None,
            )
        )
    return ProviderList(providers=out)


@router.get("/free", response_model=FreeModels)
async def free_models(request: Request, _caller: GatewayCaller) -> FreeModels:
    """Free text models from the providers' catalogues (cached); `fastest` is the one /eval
    measured quickest, when it measured any."""
    models = registry(request)
    listed, _ = await models.listing(fetch_remote=True)
    free = [m for m in listed if m.is_free and "text" in m.capabilities]
    best = max(free, key=lambda m: m.context_length or 0, default=None)
    timed = [m for m in free if m.id in models.latencies]
    fastest = min(timed, key=lambda m: models.latencies[m.id], default=None)
    return FreeModels(
        best=best,
        fastest=fastest,
        all_free=free,
        total=len(free),
        note="best: the largest context window; fastest: the lowest latency measured by "
        "/api/v1/eval/compare (null until one ran).",
    )


@router.get("/{model_id:path}", response_model=ModelInfo)
async def get_model(model_id: str, request: Request, _caller: GatewayCaller) -> ModelInfo:
    listed, _ = await registry(request).listing(fetch_remote=False)
    for model in listed:
        if model_id in (model.id, model.served_as):
            return model
    raise ModelNotFound(f"No configured provider lists the model {model_id!r}.")
