"""Presets (models, token budget, thinking, parallelism) and the model policy.

Built-in presets follow flash-contract §4.2; GENERATION_PRESETS (JSON) overrides fields of
a built-in one or adds new ones. Which model runs: an explicit `text_model`/`image_model`
beats `model_policy=permissive`, which beats the preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from tollhouse.kit.errors import ValidationFailed

DEFAULT_PRESET = "balanced"

# Open-weight model families: the only ones `model_policy=permissive` accepts.
OPEN_WEIGHT_PREFIXES = (
    "meta-llama/",
    "deepseek/",
    "qwen/",
    "mistralai/",
    "microsoft/",
    "google/gemma",
    "allenai/",
    "nvidia/",
    "nousresearch/",
    "black-forest-labs/",
    "openrouter/",
    "stability-ai/",
)


class Preset(BaseModel):
    name: str
    # Model ids the OpenRouter way; the Google provider serves "google/gemini-*" natively.
    text_model: str
    image_model: str
    # The judge is a small classification call: a cheaper model where the preset names one.
    judge_model: str | None = None
    # The provider tried first ("google" | "openrouter" | "compatible"); others are fallbacks.
    provider: str | None = None
    max_tokens: int = Field(2048, ge=1, le=32768)
    thinking: Literal["low", "medium", "high"] | None = None
    # LLM calls in flight at once for one generation.
    parallelism: int = Field(3, ge=1, le=16)
    image_size: str | None = None
    # One dialog call instead of a call per line (role-play), and no critique pass.
    batch_dialog: bool = False


BUILT_IN: Mapping[str, dict[str, Any]] = {
    "balanced": {
        "text_model": "google/gemini-2.5-flash",
        "image_model": "google/gemini-2.5-flash-image",
        "provider": "google",
        "max_tokens": 2048,
        "thinking": "medium",
        "parallelism": 3,
    },
    "hd": {
        "text_model": "google/gemini-2.5-flash",
        "image_model": "google/gemini-3-pro-image-preview",
        "provider": "google",
        "max_tokens": 8192,
        "thinking": "high",
        "parallelism": 3,
        "image_size": "2K",
    },
    "hyper": {
        "text_model": "google/gemini-2.5-flash",
        "image_model": "google/gemini-2.5-flash-image",
        "provider": "openrouter",
        "max_tokens": 1024,
        "parallelism": 8,
    },
    "gemini3": {
        "text_model": "google/gemini-3-flash-preview",
        "image_model": "google/gemini-2.5-flash-image",
        "provider": "openrouter",
        "max_tokens": 4096,
        "thinking": "medium",
        "parallelism": 5,
    },
    # Open-weight text and image models only, so the output can be used to train models.
    "free_distillable": {
        "text_model": "openrouter/hunter-alpha",
        "judge_model": "openrouter/healer-alpha",
        "image_model": "stability-ai/sd3.5-large",
        "provider": "openrouter",
        "max_tokens": 4096,
        "parallelism": 1,
    },
    "frontier": {
        "text_model": "anthropic/claude-opus-4.8",
        "image_model": "google/gemini-3-pro-image-preview",
        "provider": "openrouter",
        "max_tokens": 4096,
        "parallelism": 3,
    },
}


class RestrictedModel(ValidationFailed):
    code = "restricted_model"


class UnknownPreset(ValidationFailed):
    code = "unknown_preset"


def find_preset(presets: Mapping[str, Preset], name: str | None) -> Preset:
    """The named preset (the default one when unnamed); 422 naming the known ones otherwise."""
    preset = presets.get(name or DEFAULT_PRESET)
    if preset is None:
        known = sorted(presets)
        raise UnknownPreset(
            f"Unknown preset {name!r}: one of {', '.join(known)}.", detail={"known": known}
        )
    return preset


def load_presets(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Preset]:
    """Built-ins merged with GENERATION_PRESETS; raises ValueError on an invalid preset."""
    merged: dict[str, dict[str, Any]] = {name: dict(v) for name, v in BUILT_IN.items()}
    for name, fields in overrides.items():
        merged[name] = {**merged.get(name, {}), **fields}
    return {name: Preset(name=name, **fields) for name, fields in merged.items()}


def is_open_weight(model: str) -> bool:
    return model.lower().startswith(OPEN_WEIGHT_PREFIXES)


def check_permissive(text_model: str | None, image_model: str | None) -> None:
    """422 when a permissive request names a model that is not open-weight."""
    restricted = [m for m in (text_model, image_model) if m and not is_open_weight(m)]
    if restricted:
        raise RestrictedModel(
            f"model_policy=permissive allows open-weight models only; {restricted[0]!r} is not "
            f"one. Allowed prefixes: {', '.join(OPEN_WEIGHT_PREFIXES)}",
            detail={"restricted": restricted, "allowed_prefixes": list(OPEN_WEIGHT_PREFIXES)},
        )


def model_provider(model: str | None) -> str:
    """Provenance of a model id: google, openrouter, stability, or unknown (§1.3)."""
    if not model:
        return "unknown"
    lowered = model.lower()
    if lowered.startswith(("gemini", "google/gemini", "imagen")):
        return "google"
    if lowered.startswith("stability-ai/"):
        return "stability"
    if "/" in lowered:
        return "openrouter"
    return "unknown"
