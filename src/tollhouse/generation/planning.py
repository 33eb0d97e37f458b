"""A generate request resolved against its preset and the model policy.

Which model runs: an explicit `text_model`/`image_model` beats `model_policy=permissive`
(open-weight defaults, batch dialog, no grounding or critique), which beats the preset.
An unknown preset is a 422 naming the known ones (the contract ran the default one silently).
"""

from __future__ import annotations

from collections.abc import Mapping

from tollhouse.config import Settings
from tollhouse.generation.context import SceneRequest
from tollhouse.generation.llm.base import Sampling
from tollhouse.generation.presets import Preset, check_permissive, find_preset
from tollhouse.generation.schemas import GenerateRequest, LLMParams


def _sampling(params: LLMParams | None, preset: Preset) -> Sampling:
    if params is None:
        return Sampling(max_tokens=preset.max_tokens, thinking_level=preset.thinking)
    return Sampling(
        temperature=params.temperature,
        max_tokens=params.max_tokens or preset.max_tokens,
        top_p=params.top_p,
        top_k=params.top_k,
        frequency_penalty=params.frequency_penalty,
        presence_penalty=params.presence_penalty,
        repetition_penalty=params.repetition_penalty,
        stop=tuple(params.stop or ()),
        thinking_level=params.thinking_level or preset.thinking,
    )


def plan(body: GenerateRequest, presets: Mapping[str, Preset], settings: Settings) -> SceneRequest:
    """422 `restricted_model` when a permissive request names a restricted model."""
    permissive = body.model_policy == "permissive"
    if permissive:
        check_permissive(body.text_model, body.image_model)
    preset = find_preset(presets, body.preset)
    if permissive:
        preset = preset.model_copy(update={"batch_dialog": True})
    text_model = body.text_model or (
        settings.permissive_text_model if permissive else preset.text_model
    )
    image_model = body.image_model or (
        settings.permissive_image_model if permissive else preset.image_model
    )
    params = body.llm_params
    return SceneRequest(
        query=body.query,
        preset=preset,
        text_model=text_model,
        image_model=image_model,
        judge_model=body.text_model or preset.judge_model or text_model,
        sampling=_sampling(params, preset),
        generate_image=body.generate_image,
        permissive=permissive,
        system_prompt_prefix=(params.system_prompt_prefix or "") if params else "",
        system_prompt_suffix=(params.system_prompt_suffix or "") if params else "",
        entity_ids=tuple(body.entity_ids),
    )
