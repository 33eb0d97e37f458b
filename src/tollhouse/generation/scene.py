"""The scene graph: which agent runs when, and how its results become a timepoint record.

flash-contract §4.1: judge → grounding → timeline → scene → characters → (camera ∥ moment) →
dialog (+ critique) → image prompt → optimizer → image. Only the image steps and grounding
may fail without failing the run; progress values are the SSE ones (§4.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from tollhouse.generation.agents.camera import CameraSetup, frame_shot
from tollhouse.generation.agents.cast import Cast, assemble_cast
from tollhouse.generation.agents.critique import DialogCritique, critique_dialog
from tollhouse.generation.agents.dialog import (
    MAX_LINES,
    DialogLine,
    batch_dialog,
    role_play_dialog,
)
from tollhouse.generation.agents.grounding import Grounding, ground
from tollhouse.generation.agents.image import generate_image
from tollhouse.generation.agents.image_prompt import ImagePrompt, describe_image
from tollhouse.generation.agents.image_prompt_optimizer import (
    OptimizedPrompt,
    optimize_image_prompt,
)
from tollhouse.generation.agents.judge import JudgeVerdict, judge
from tollhouse.generation.agents.moment import DramaticMoment, choose_moment
from tollhouse.generation.agents.scene import SceneSetting, design_scene
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.agents.timeline import Timeline, place_in_time
from tollhouse.generation.context import SceneContext, SceneRequest
from tollhouse.generation.llm.base import Image
from tollhouse.generation.pipeline import Graph, Step, StepFailed

log = structlog.get_logger("tollhouse.generation")

# Kept in the results next to the steps' own: why the image is missing, for the payload.
IMAGE_WARNING = "image_generation_warning"

# LLM calls each step makes one after another in the worst normal case (no retries, no
# critique re-run): the benchmark's weight for `Graph.longest_path`.
SEQUENTIAL_CALLS: dict[str, int] = {
    "judge": 1,
    "grounding": 1,
    "timeline": 1,
    "scene": 1,
    "characters": 3,  # identification, graph, then every bio at once
    "camera": 1,
    "moment": 1,
    "dialog": MAX_LINES + 1,  # a role-played line each, then the critique
    "image_prompt": 1,
    "image_prompt_optimize": 1,
    "image_generation": 1,
}


def sequential_calls(step: Step[Any]) -> float:
    """`scene_graph().longest_path(sequential_calls)`: LLM round trips on the critical path."""
    return SEQUENTIAL_CALLS[step.name]


@dataclass(frozen=True, slots=True)
class ReviewedDialog:
    lines: list[DialogLine]
    # None when the critique was skipped (batch dialog) or could not be had.
    critique: DialogCritique | None = None
    revised: bool = False


def _query(ctx: SceneContext) -> str:
    verdict: JudgeVerdict | None = ctx.results.get("judge")
    query = verdict.cleaned_query if verdict else ctx.request.query
    # The judge cleans the query; what must carry over is added back after it.
    return f"{query}\n\n{ctx.request.continuity}" if ctx.request.continuity else query


def _stage(ctx: SceneContext) -> Stage:
    return Stage(
        query=_query(ctx),
        timeline=ctx.results["timeline"],
        scene=ctx.results["scene"],
        grounding=ctx.results.get("grounding"),
    )


def _batch_dialog(request: SceneRequest) -> bool:
    return request.preset.batch_dialog or request.permissive


async def _judge(ctx: SceneContext) -> JudgeVerdict:
    return await judge(ctx.llm, ctx.request.query, model=ctx.request.judge_model)


def _wants_grounding(ctx: SceneContext) -> bool:
    verdict: JudgeVerdict = ctx.results["judge"]
    return verdict.query_type == "historical" and not ctx.request.permissive


async def _grounding(ctx: SceneContext) -> Grounding:
    verdict: JudgeVerdict = ctx.results["judge"]
    return await ground(ctx.llm, verdict.cleaned_query, verdict.detected_figures)


async def _timeline(ctx: SceneContext) -> Timeline:
    return await place_in_time(ctx.llm, _query(ctx), ctx.results.get("grounding"))


async def _scene(ctx: SceneContext) -> SceneSetting:
    grounding = ctx.results.get("grounding")
    return await design_scene(ctx.llm, _query(ctx), ctx.results["timeline"], grounding)


async def _characters(ctx: SceneContext) -> Cast:
    return await assemble_cast(ctx.llm, _stage(ctx))


async def _camera(ctx: SceneContext) -> CameraSetup:
    return await frame_shot(ctx.llm, _stage(ctx))


async def _moment(ctx: SceneContext) -> DramaticMoment:
    cast: Cast = ctx.results["characters"]
    return await choose_moment(ctx.llm, _stage(ctx), cast.bios, cast.graph)


async def _dialog(ctx: SceneContext) -> ReviewedDialog:
    stage, cast, moment = _stage(ctx), ctx.results["characters"], ctx.results["moment"]
    write = batch_dialog if _batch_dialog(ctx.request) else role_play_dialog
    lines = await write(ctx.llm, stage, moment, cast.speakers)
    if _batch_dialog(ctx.request):
        return ReviewedDialog(lines)
    try:
        critique = await critique_dialog(ctx.llm, stage, cast.speakers, lines)
    except Exception as exc:  # the review improves the dialog; without it the lines stand
        log.warning("dialog_critique_failed", error=str(exc), kept="first draft")
        return ReviewedDialog(lines)
    if not critique.has_critical:
        return ReviewedDialog(lines, critique)
    revised = await write(ctx.llm, stage, moment, cast.speakers, critique.revision_instructions)
    return ReviewedDialog(revised, critique, revised=True)


async def _image_prompt(ctx: SceneContext) -> ImagePrompt:
    dialog: ReviewedDialog | None = ctx.results.get("dialog")
    return await describe_image(
        ctx.llm,
        _stage(ctx),
        ctx.results.get("characters"),
        ctx.results.get("moment"),
        ctx.results.get("camera"),
        dialog.lines if dialog else [],
    )


def _wants_image(ctx: SceneContext) -> bool:
    return ctx.request.generate_image


async def _optimize(ctx: SceneContext) -> OptimizedPrompt:
    image_prompt: ImagePrompt | None = ctx.results.get("image_prompt")
    if image_prompt is None:
        raise StepFailed("no image prompt to optimize")
    return await optimize_image_prompt(ctx.llm, image_prompt)


async def _image(ctx: SceneContext) -> Image:
    optimized: OptimizedPrompt | None = ctx.results.get("image_prompt_optimize")
    full: ImagePrompt | None = ctx.results.get("image_prompt")
    try:
        # A failed optimizer costs quality, not the image: the full prompt still draws.
        prompt = optimized.prompt if optimized else full.prompt if full else None
        if prompt is None:
            raise StepFailed("no image prompt to draw from")
        return await generate_image(ctx.llm, prompt)
    except Exception as exc:
        ctx.results[IMAGE_WARNING] = f"Image generation failed: {str(exc) or type(exc).__name__}"
        raise


def scene_graph() -> Graph[SceneContext]:
    before_image = ("judge", "grounding", "timeline", "scene", "characters", "camera", "moment")
    return Graph(
        [
            Step("judge", _judge, progress=10),
            Step(
                "grounding",
                _grounding,
                needs=("judge",),
                critical=False,
                when=_wants_grounding,
                progress=15,
            ),
            Step("timeline", _timeline, needs=("judge", "grounding"), progress=20),
            Step("scene", _scene, needs=("timeline", "grounding"), progress=30),
            Step("characters", _characters, needs=("scene",), progress=50),
            Step("camera", _camera, needs=("scene",), progress=65),
            Step("moment", _moment, needs=("characters",), progress=65),
            Step("dialog", _dialog, needs=("characters", "moment"), progress=80),
            Step(
                "image_prompt",
                _image_prompt,
                needs=(*before_image, "dialog"),
                critical=False,
                progress=90,
            ),
            Step(
                "image_prompt_optimize",
                _optimize,
                needs=("image_prompt",),
                critical=False,
                when=_wants_image,
                progress=95,
            ),
            Step(
                "image_generation",
                _image,
                needs=("image_prompt_optimize",),
                critical=False,
                when=_wants_image,
                progress=100,
            ),
        ]
    )


@dataclass(frozen=True, slots=True)
class SceneRecord:
    """A finished run as the timepoint row stores it (the caller adds query, slug, models)."""

    year: int | None
    month: int | None
    day: int | None
    season: str | None
    time_of_day: str | None
    era: str | None
    location: str | None
    # tdf_payload keys (flash-contract §4.5); JSON-ready.
    payload: dict[str, Any]
    # The generated image; kept out of the payload (it goes to storage).
    image: Image | None = None


def _dump(value: Any) -> Any:
    return None if value is None else value.model_dump(mode="json")


def _character_data(cast: Cast | None) -> dict[str, Any] | None:
    if cast is None:
        return None
    return {
        "characters": [bio.model_dump(mode="json") for bio in cast.bios],
        "total_characters": len(cast.bios),
        "speaking_characters": sum(bio.speaks_in_scene for bio in cast.bios),
    }


def scene_record(results: Mapping[str, Any], *, entity_ids: tuple[str, ...] = ()) -> SceneRecord:
    timeline: Timeline | None = results.get("timeline")
    cast: Cast | None = results.get("characters")
    dialog: ReviewedDialog | None = results.get("dialog")
    image_prompt: ImagePrompt | None = results.get("image_prompt")
    optimized: OptimizedPrompt | None = results.get("image_prompt_optimize")
    when: dict[str, Any] = {
        "year": timeline.year if timeline else None,
        "month": timeline.month if timeline else None,
        "day": timeline.day if timeline else None,
        "season": timeline.season if timeline else None,
        "time_of_day": timeline.time_of_day if timeline else None,
        "era": timeline.era if timeline else None,
        "location": timeline.location if timeline else None,
    }
    payload = {
        **when,
        "scene_data": _dump(results.get("scene")),
        "character_data": _character_data(cast),
        "entity_ids": list(entity_ids),
        "dialog": [line.model_dump(mode="json") for line in dialog.lines] if dialog else [],
        "grounding_data": _dump(results.get("grounding")),
        "moment_data": _dump(results.get("moment")),
        "graph_data": _dump(cast.graph) if cast else None,
        "camera_data": _dump(results.get("camera")),
        "image_prompt_data": _dump(image_prompt),
        "image_prompt": image_prompt.prompt if image_prompt else None,
        "optimized_prompt": optimized.prompt if optimized else None,
        "image_generation_warning": results.get(IMAGE_WARNING),
    }
    return SceneRecord(**when, payload=payload, image=results.get("image_generation"))
