"""The scene graph end to end: real agents, the real router and `openai` SDK, a scripted peer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from llm_peer import LLMPeer
from llm_script import Call
from scene_script import CAST, QUERY, script_scene
from tollhouse.generation.context import RunLLM, SceneContext, SceneRequest
from tollhouse.generation.llm.base import Sampling
from tollhouse.generation.llm.openai_compatible import OpenAICompatibleProvider
from tollhouse.generation.llm.router import LLMRouter
from tollhouse.generation.pipeline import RunResult, StepOutcome
from tollhouse.generation.presets import load_presets
from tollhouse.generation.scene import (
    SEQUENTIAL_CALLS,
    SceneRecord,
    scene_graph,
    scene_record,
    sequential_calls,
)

pytestmark = pytest.mark.anyio

MODEL = "meta-llama/llama-4-scout"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAYLOAD_KEYS = {
    "year", "month", "day", "season", "time_of_day", "era", "location", "scene_data",
    "character_data", "entity_ids", "dialog", "grounding_data", "moment_data", "graph_data",
    "camera_data", "image_prompt_data", "image_prompt", "optimized_prompt",
    "image_generation_warning",
}  # fmt: skip


@dataclass
class Run:
    result: RunResult
    reported: list[StepOutcome]  # on_step's calls, in order
    record: SceneRecord

    def status(self, step: str) -> str:
        return self.result.outcomes[step].status


@pytest.fixture
async def router(llm_peer: LLMPeer) -> AsyncIterator[LLMRouter]:
    provider = OpenAICompatibleProvider(
        "compatible", base_url=llm_peer.openai_base_url, api_key=None, timeout_seconds=10
    )
    router = LLMRouter([provider], max_retries=0, backoff_seconds=0, requests_per_minute=0)
    yield router
    await router.close()


async def generate(
    router: LLMRouter,
    *,
    generate_image: bool = False,
    permissive: bool = False,
    parallelism: int = 3,
) -> Run:
    preset = load_presets({"balanced": {"parallelism": parallelism}})["balanced"]
    request = SceneRequest(
        query=QUERY,
        preset=preset,
        text_model=MODEL,
        image_model="black-forest-labs/flux-schnell",
        judge_model=MODEL,
        sampling=Sampling(max_tokens=2048),
        generate_image=generate_image,
        permissive=permissive,
        entity_ids=("fig-armstrong",),
    )
    ctx = SceneContext(request, RunLLM(router, request))
    reported: list[StepOutcome] = []

    async def on_step(outcome: StepOutcome) -> None:
        reported.append(outcome)

    result = await scene_graph().run(ctx, on_step)
    return Run(result, reported, scene_record(ctx.results, entity_ids=request.entity_ids))


def calls_named(llm_peer: LLMPeer, name: str) -> list[Call]:
    return [call for call in llm_peer.script.calls if llm_peer.script.name_of(call) == name]


def bios_of(llm_peer: LLMPeer) -> list[Call]:
    return calls_named(llm_peer, "CharacterBio")


async def test_a_whole_scene_runs_in_dependency_order(llm_peer: LLMPeer, router: LLMRouter) -> None:
    script_scene(llm_peer.script)
    run = await generate(router)

    assert run.result.error is None
    graph = scene_graph()
    seen: set[str] = set()
    for outcome in run.reported:
        assert set(graph.steps[outcome.name].needs) <= seen
        seen.add(outcome.name)
    assert [o.name for o in run.reported if o.name not in ("camera", "moment")] == [
        "judge", "grounding", "timeline", "scene", "characters", "dialog", "image_prompt"
    ]  # fmt: skip
    assert {o.name: o.progress for o in run.reported} == {
        "judge": 10, "grounding": 15, "timeline": 20, "scene": 30, "characters": 50,
        "camera": 65, "moment": 65, "dialog": 80, "image_prompt": 90,
    }  # fmt: skip
    assert run.status("image_prompt_optimize") == run.status("image_generation") == "skipped"

    record = run.record
    assert (record.year, record.month, record.day) == (1969, 7, 20)
    assert record.location == "Tranquility Base, Sea of Tranquility, the Moon"
    assert set(record.payload) == PAYLOAD_KEYS
    characters = record.payload["character_data"]
    assert [c["name"] for c in characters["characters"]] == [c["name"] for c in CAST[:3]]
    assert characters["total_characters"] == characters["speaking_characters"] == 3
    assert set(characters["characters"][0]) >= {
        "name", "role", "system_prompt", "dialog_context", "speaks_in_scene", "personality",
        "speaking_style", "emotional_state", "historical_note",
    }  # fmt: skip
    dialog = record.payload["dialog"]
    assert len(dialog) == 7
    assert dialog[0] == {
        "speaker": "Neil Armstrong",
        "text": "Houston, Tranquility Base here. The Eagle has landed.",
        "tone": "steady",
    }
    assert [line["speaker"] for line in dialog[:3]] == [c["name"] for c in CAST[:3]]
    for call, line in zip(calls_named(llm_peer, "SpokenLine"), dialog, strict=True):
        assert call.system.startswith(f"You are {line['speaker']}, ")
        assert f"You are {line['speaker']}. Speak your next line." in call.prompt
    assert record.payload["graph_data"]["power_dynamics"].startswith("Armstrong decides")
    assert record.payload["entity_ids"] == ["fig-armstrong"]
    assert record.payload["image_generation_warning"] is None
    assert record.image is None

    stats = {o.name: o.stats for o in run.reported}
    assert stats["characters"].calls == 1 + 1 + 3  # identification, graph, a bio each
    assert stats["dialog"].calls == 7 + 1  # a role-played line each, then the critique
    assert all(s.calls >= 1 and s.input_tokens > 0 and s.output_tokens > 0 for s in stats.values())
    assert stats["judge"].model == MODEL


async def test_the_critical_path_counts_sequential_llm_calls() -> None:
    graph = scene_graph()
    assert set(SEQUENTIAL_CALLS) == set(graph.steps)
    # judge, grounding, timeline, scene, characters (3), moment, dialog (7 + critique), image
    # prompt, optimizer, image: camera runs beside characters and moment.
    assert graph.longest_path(sequential_calls) == 1 + 1 + 1 + 1 + 3 + 1 + 8 + 1 + 1 + 1
    critical = {name for name, step in graph.steps.items() if step.critical}
    assert critical == {"judge", "timeline", "scene", "characters", "camera", "moment", "dialog"}


async def test_a_rejected_query_stops_at_the_judge(llm_peer: LLMPeer, router: LLMRouter) -> None:
    script_scene(llm_peer.script)
    reason = "This is not a moment in time but a request for a recipe."
    llm_peer.script.respond(
        "JudgeVerdict",
        {"query_type": "invalid", "is_valid": False, "cleaned_query": "", "confidence": 0.9,
         "reason": reason, "suggested_query": "The first Thanksgiving, 1621"},
    )  # fmt: skip
    run = await generate(router)

    assert run.result.error == f"Query rejected by judge: {reason}"
    assert [o.name for o in run.reported] == ["judge"]
    assert run.reported[0].status == "failed"
    assert [call.schema_name for call in llm_peer.script.calls] == ["JudgeVerdict"]


@pytest.mark.parametrize(
    ("reason", "unsafe", "runs"),
    [
        ("Rejected: this is a speculative scenario about a future event.", False, True),
        ("The query lacks concrete historical grounding.", False, True),
        ("Sexual content about a minor; a personal request we refuse.", True, False),
    ],
)
async def test_the_drift_override_accepts_speculative_rejections_but_not_unsafe_ones(
    llm_peer: LLMPeer, router: LLMRouter, reason: str, unsafe: bool, runs: bool
) -> None:
    script_scene(llm_peer.script, query_type="speculative")
    llm_peer.script.respond(
        "JudgeVerdict",
        {"query_type": "invalid", "is_valid": False, "cleaned_query": "A Mars landing, 2035",
         "confidence": 0.4, "reason": reason, "unsafe": unsafe},
    )  # fmt: skip
    run = await generate(router)

    assert (run.result.error is None) is runs
    if runs:
        assert run.status("dialog") == "completed"
        assert run.status("grounding") == "skipped"  # not historical
        assert "A Mars landing, 2035" in calls_named(llm_peer, "Timeline")[0].prompt


async def test_a_failed_grounding_does_not_stop_the_scene(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.fail("Grounding", 500)
    run = await generate(router)

    assert run.result.error is None
    assert run.status("grounding") == "failed"
    for step in ("timeline", "scene", "characters", "moment", "camera", "dialog"):
        assert run.status(step) == "completed"
    assert run.record.payload["grounding_data"] is None
    assert len(run.record.payload["dialog"]) == 7
    assert run.record.payload["scene_data"]["setting"].startswith("The cramped cabin")


async def test_a_failed_timeline_fails_the_run(llm_peer: LLMPeer, router: LLMRouter) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.fail("Timeline", 500)
    run = await generate(router)

    assert run.result.error is not None
    assert run.result.error.startswith("timeline: ")
    assert set(run.result.outcomes) == {"judge", "grounding", "timeline"}
    assert [call.schema_name for call in llm_peer.script.calls] == [
        "JudgeVerdict", "Grounding", "Timeline"
    ]  # fmt: skip


async def test_the_cast_is_capped_at_six(llm_peer: LLMPeer, router: LLMRouter) -> None:
    script_scene(llm_peer.script, characters=8)
    run = await generate(router)

    assert run.result.error is None
    names = [c["name"] for c in run.record.payload["character_data"]["characters"]]
    assert names == [c["name"] for c in CAST[:6]]
    assert len(bios_of(llm_peer)) == 6


async def test_bios_are_written_in_parallel(llm_peer: LLMPeer, router: LLMRouter) -> None:
    script_scene(llm_peer.script, characters=4)
    llm_peer.script.gather("CharacterBio", 4)
    run = await generate(router, permissive=True, parallelism=4)

    assert run.result.error is None
    characters = run.result.outcomes["characters"]
    assert characters.stats.calls == 1 + 1 + 4
    subjects = [call.prompt.split("## Write the profile of")[-1] for call in bios_of(llm_peer)]
    for person in CAST[:4]:
        assert sum(person["name"] in subject for subject in subjects) == 1
    # All four were in flight at once: one after another, each would be alone.
    assert llm_peer.script.most_in_flight["CharacterBio"] == 4


async def test_critical_critique_reruns_the_dialog_once_with_corrections(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script, has_critical=True)
    run = await generate(router)

    assert run.result.error is None
    lines = calls_named(llm_peer, "SpokenLine")
    assert len(lines) == 14
    corrections = "CRITICAL CORRECTIONS REQUIRED: Give Aldrin his numbers-first cadence."
    assert not any(corrections in call.prompt for call in lines[:7])
    assert all(corrections in call.prompt for call in lines[7:])
    assert len(calls_named(llm_peer, "DialogCritique")) == 1
    assert run.result.outcomes["dialog"].stats.calls == 7 + 1 + 7
    assert len(run.record.payload["dialog"]) == 7


async def test_permissive_writes_dialog_in_one_call_without_grounding_or_critique(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script)
    run = await generate(router, permissive=True)

    assert run.result.error is None
    assert run.status("grounding") == "skipped"
    assert len(calls_named(llm_peer, "DialogScript")) == 1
    for unused in ("SpokenLine", "DialogCritique", "Grounding"):
        assert calls_named(llm_peer, unused) == []
    assert [line["speaker"] for line in run.record.payload["dialog"]][:3] == [
        c["name"] for c in CAST[:3]
    ]


async def test_generate_image_optimizes_the_prompt_and_draws_it(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script)
    run = await generate(router, generate_image=True)

    assert run.result.error is None
    assert [o.name for o in run.reported][-3:] == [
        "image_prompt", "image_prompt_optimize", "image_generation"
    ]  # fmt: skip
    assert run.reported[-1].progress == 100
    assert run.record.image is not None
    assert run.record.image.data.startswith(PNG_SIGNATURE)
    assert run.record.image.content_type == "image/png"
    payload = run.record.payload
    assert payload["optimized_prompt"].startswith("Two astronauts in white suits")
    assert calls_named(llm_peer, "image")[0].prompt == payload["optimized_prompt"]
    assert payload["image_prompt_data"]["style"] == "1969 Hasselblad colour transparency"
    assert payload["image_generation_warning"] is None


async def test_a_failed_image_leaves_a_completed_scene_with_a_warning(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.fail("image", 500)
    run = await generate(router, generate_image=True)

    assert run.result.error is None
    assert run.status("image_generation") == "failed"
    assert run.record.image is None
    warning = run.record.payload["image_generation_warning"]
    assert warning is not None
    assert warning.startswith("Image generation failed: ")
    assert run.record.payload["optimized_prompt"] is not None


async def test_failed_identification_falls_back_to_one_casting_call(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.fail("CharacterList", 500)
    run = await generate(router)

    assert run.result.error is None
    assert len(calls_named(llm_peer, "CharacterSheet")) == 1
    assert bios_of(llm_peer) == []
    assert run.record.payload["character_data"]["total_characters"] >= 1
    assert run.record.payload["graph_data"] is None


async def test_unscripted_answers_still_make_a_scene(llm_peer: LLMPeer, router: LLMRouter) -> None:
    """Every agent schema is one the peer can answer from its JSON schema alone."""
    run = await generate(router, generate_image=True)

    assert run.result.error is None
    assert all(o.status == "completed" for o in run.reported)
    assert len(run.record.payload["dialog"]) == 7


async def test_a_failed_bio_fails_the_characters_step_readably(
    llm_peer: LLMPeer, router: LLMRouter
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.fail("CharacterBio", 500)
    run = await generate(router)

    assert run.result.error is not None
    assert run.result.error.startswith("characters: ")
    assert "TaskGroup" not in run.result.error
    assert calls_named(llm_peer, "DramaticMoment") == []


# Every agent failing for good (no retries): which step reports it and whether the scene
# survives. (schema failing, step that fails or None when an agent's fallback absorbs it,
# whether the run still completes)
AGENT_FAILURES = [
    ("JudgeVerdict", "judge", False),
    ("Grounding", "grounding", True),
    ("Timeline", "timeline", False),
    ("SceneSetting", "scene", False),
    ("CharacterList", None, True),  # falls back to one casting call
    ("CharacterGraph", None, True),  # bios are written without the graph
    ("CharacterBio", "characters", False),
    ("CameraSetup", "camera", False),
    ("DramaticMoment", "moment", False),
    ("SpokenLine", "dialog", False),
    ("DialogCritique", None, True),  # the first draft stands
    ("ImagePrompt", "image_prompt", True),  # and the image steps after it, with nothing to draw
    ("OptimizedPrompt", "image_prompt_optimize", True),  # the full prompt still draws
    ("image", "image_generation", True),
]


@pytest.mark.parametrize(("schema", "step", "completes"), AGENT_FAILURES)
async def test_each_agents_failure_is_critical_or_not_as_declared(
    llm_peer: LLMPeer, router: LLMRouter, schema: str, step: str | None, completes: bool
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.fail(schema, 500, times=100)
    run = await generate(router, generate_image=True)

    assert (run.result.error is None) is completes, run.result.error
    failed = [name for name, outcome in run.result.outcomes.items() if outcome.status == "failed"]
    if schema == "ImagePrompt":
        assert failed == ["image_prompt", "image_prompt_optimize", "image_generation"]
    else:
        assert failed == ([step] if step else [])
    if not completes:
        assert run.result.error is not None
        assert run.result.error.startswith(f"{step}: ")
        # Nothing that needed the failed step ran.
        assert "image_prompt" not in run.result.outcomes
    if schema == "OptimizedPrompt":
        assert run.record.image is not None
    if schema in ("image", "ImagePrompt"):
        assert run.record.image is None
        assert run.record.payload["image_generation_warning"]
