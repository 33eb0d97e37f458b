"""What the Flash gateway's real clients read and call, through HTTP on SQLite and
PostgreSQL with the scripted LLM peer and a clockchain peer: presets, the fields clients
read, provenance, SSE progress, export and TDF, models, eval, entities, content and
re-grounding (flash-contract §1.3, §1.7, §4.5, §9)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from clockchain_peer import KEY as CLOCKCHAIN_KEY
from clockchain_peer import ClockchainPeer
from gen_support import GENERATE, Gen, MakeGen
from llm_peer import LLMPeer
from scene_script import QUERY, script_scene
from support import SERVICE, as_user, assert_error, resolve
from tollhouse.generation import discovery_routes

pytestmark = pytest.mark.anyio


@pytest.fixture
def make_api(make_gen: MakeGen, clockchain_peer: ClockchainPeer) -> MakeGen:
    """gen_support's served app, with the clockchain peer configured unless told not to."""

    async def factory(*, clockchain: bool = True, **overrides: Any) -> Gen:
        values: dict[str, Any] = {}
        if clockchain:
            values = {
                "clockchain_service_url": clockchain_peer.url,
                "clockchain_service_key": CLOCKCHAIN_KEY,
            }
        return await make_gen(**(values | overrides))

    return factory


@pytest.fixture
async def api(make_api: MakeGen, llm_peer: LLMPeer) -> Gen:
    script_scene(llm_peer.script)
    return await make_api()


# --- presets, fields, provenance, progress ----------------------------------------------------


async def test_new_presets_run_at_their_price_and_an_unknown_one_is_422(api: Gen) -> None:
    user = await resolve(api.http, "presets")
    unknown = await api.http.post(
        GENERATE, json={"query": QUERY, "preset": "ultra"}, headers=as_user(user)
    )
    body = assert_error(unknown, 422, "unknown_preset")
    assert "free_distillable" in body["message"]
    assert "frontier" in body["detail"]["known"]
    assert await api.moves(user) == []

    frontier = await api.sync(as_user(user), {"query": QUERY, "preset": "frontier"})
    assert frontier["preset_used"] == "frontier"
    assert frontier["text_model_used"] == "anthropic/claude-opus-4.8"
    distillable = await api.sync(as_user(user), {"query": QUERY, "preset": "free_distillable"})
    assert distillable["text_model_used"] == "openrouter/hunter-alpha"
    assert distillable["model_permissiveness"] == "permissive"
    judged_by = {c.model for c in api.script.calls if c.schema_name == "JudgeVerdict"}
    assert "openrouter/healer-alpha" in judged_by
    # Both at the default preset's price (flash-contract §3.2: no cost key of their own).
    assert await api.moves(user) == [(-5, "generation"), (-5, "generation")]


async def test_full_responses_carry_what_clients_read(api: Gen) -> None:
    body = await api.sync(SERVICE, {"query": QUERY})
    assert body["grounding"]["grounding_confidence"] == 0.95
    assert body["grounding"]["verified_year"] == 1969
    assert body["moment"]["plot_summary"].startswith("Eagle has just landed")
    assert body["moment"]["narrative"].startswith("The descent engine falls silent")
    # Provenance: the provider that really answered (the OpenAI-compatible peer).
    assert body["model_provider"] == "compatible"
    assert body["model_permissiveness"] == "restricted"


async def test_provenance_and_status_say_what_really_runs(
    make_api: MakeGen, llm_peer: LLMPeer
) -> None:
    script_scene(llm_peer.script)
    api = await make_api(llm_model="qwen/qwen3-32b")
    status = (await api.http.get("/api/v1/status", headers=SERVICE)).json()
    assert status["primary_provider"] == "compatible"
    assert status["models"]["creative"] == "qwen/qwen3-32b"
    body = await api.sync(SERVICE, {"query": QUERY})
    # The preset asked for Gemini; LLM_MODEL sent every call to Qwen, and the row says so.
    assert body["preset_used"] == "balanced"
    assert body["text_model_used"] == "qwen/qwen3-32b"
    assert body["model_permissiveness"] == "permissive"
    assert {call.model for call in api.script.calls} == {"qwen/qwen3-32b"}


async def test_stream_progress_never_goes_backwards(api: Gen) -> None:
    response = await api.http.post(GENERATE + "/stream", json={"query": QUERY}, headers=SERVICE)
    assert response.status_code == 200
    frames = [
        json.loads(block.removeprefix("data: "))
        for block in response.text.split("\n\n")
        if block.startswith("data: ")
    ]
    steps = [frame["step"] for frame in frames]
    # Camera (one call after the scene) finishes before characters (several rounds of calls):
    # the case where a step's own progress (65) would come before a smaller one (50).
    assert steps.index("camera") < steps.index("characters")
    progress = [frame["progress"] for frame in frames]
    assert progress == sorted(progress)
    assert (frames[0]["progress"], frames[-1]["event"], frames[-1]["progress"]) == (0, "done", 100)


# --- export and TDF ---------------------------------------------------------------------------


def _tdf_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def test_tdf_and_export_respect_visibility_and_the_clockchain_takes_the_record(
    api: Gen, clockchain_peer: ClockchainPeer
) -> None:
    owner = await resolve(api.http, "exporter")
    other = await resolve(api.http, "onlooker")
    made = await api.sync(
        as_user(owner), {"query": QUERY, "visibility": "private", "entity_ids": ["fig_armstrong"]}
    )
    tdf_url = f"/api/v1/timepoints/{made['id']}/tdf"
    record = (await api.http.get(tdf_url, headers=as_user(owner))).json()
    assert record["id"] == made["id"]
    assert record["source"] == "flash"
    assert record["version"] == "1.0.0"
    assert record["provenance"] == {
        "generator": "timepoint-flash",
        "run_id": None,
        "confidence": 0.95,
        "flash_id": made["id"],
    }
    assert record["entity_ids"] == ["fig_armstrong"]
    assert record["payload"]["grounding_data"]["verified_year"] == 1969
    assert record["tdf_hash"] == _tdf_hash(record["payload"])
    assert_error(await api.http.get(tdf_url, headers=as_user(other)), 403, "timepoint_private")
    assert_error(
        await api.http.post(f"/api/v1/timepoints/{made['id']}/export", headers=as_user(other)),
        403,
        "not_owner",
    )

    exported = await api.http.post(
        f"/api/v1/timepoints/{made['id']}/export", headers=as_user(owner)
    )
    assert exported.status_code == 200, exported.text
    body = exported.json()
    assert body["blob_path"] == f"timepoints/{made['id']}/tdf.json"
    assert body["blob_folder_name"] == f"timepoints/{made['id']}"
    assert body["blob_written_at"] is not None
    stored = await api.app.state.generation.storage.get(body["blob_path"])
    assert json.loads(stored.data) == record

    # The clockchain's ingest takes the record as it is (through our clockchain proxy).
    ingest = await api.http.post(
        "/api/v1/clockchain/ingest/tdf", json=[record], headers=as_user(owner)
    )
    assert ingest.status_code == 200, ingest.text
    assert ingest.json() == {"ingested_nodes": 1}
    assert clockchain_peer.ingested[0].payload == record["payload"]


async def test_write_blob_and_unfinished_exports(api: Gen) -> None:
    made = await api.sync(SERVICE, {"query": QUERY, "write_blob": True})
    assert made["blob_path"] == f"timepoints/{made['id']}/tdf.json"
    assert await api.app.state.generation.storage.get(made["blob_path"]) is not None
    api.script.fail("JudgeVerdict", 400)
    failed = await api.http.post(GENERATE + "/sync", json={"query": QUERY}, headers=SERVICE)
    failed_id = (
        await api.http.get("/api/v1/timepoints", headers=SERVICE, params={"status": "failed"})
    ).json()["items"][0]["id"]
    assert failed.status_code in (200, 500)
    for response in (
        await api.http.get(f"/api/v1/timepoints/{failed_id}/tdf", headers=SERVICE),
        await api.http.post(f"/api/v1/timepoints/{failed_id}/export", headers=SERVICE),
    ):
        assert_error(response, 400, "not_completed")
    missing = uuid.uuid4()
    assert_error(
        await api.http.get(f"/api/v1/timepoints/{missing}/tdf", headers=SERVICE),
        404,
        "timepoint_not_found",
    )


# --- models and eval ---------------------------------------------------------------------------


REMOTE = [
    {
        "id": "meta-llama/llama-4-scout:free",
        "name": "Llama 4 Scout (free)",
        "context_length": 131072,
        "pricing": {"prompt": "0", "completion": "0"},
        "architecture": {"output_modalities": ["text"]},
    },
    {
        "id": "qwen/qwen3-8b:free",
        "name": "Qwen3 8B (free)",
        "context_length": 32768,
        "pricing": {"prompt": "0", "completion": "0"},
        "architecture": {"output_modalities": ["text"]},
    },
    {
        "id": "google/gemini-2.5-flash",
        "name": "Gemini 2.5 Flash",
        "context_length": 1048576,
        "pricing": {"prompt": "0.0000003", "completion": "0.0000025"},
        "architecture": {"output_modalities": ["text"]},
    },
]


async def test_image_models_are_listed_as_the_provider_serves_images(
    make_api: MakeGen,
) -> None:
    """A compatible server with LLM_MODEL and LLM_IMAGE_MODEL is sent the image model for
    image calls: the listing says so (it used to name the text model for every image)."""
    api = await make_api(llm_model="local-text", llm_image_model="local-image")
    listed = (await api.http.get("/api/v1/models", headers=SERVICE)).json()["models"]
    served = {
        (m["capabilities"][0], m["served_as"]) for m in listed if m["provider"] == "compatible"
    }
    assert {capability for capability, _ in served} == {"text", "image"}
    assert served == {("text", "local-text"), ("image", "local-image")}


async def test_models_offline_from_configuration_then_from_the_providers(api: Gen) -> None:
    listed = (await api.http.get("/api/v1/models", headers=SERVICE)).json()
    ids = {model["id"] for model in listed["models"]}
    assert {"google/gemini-2.5-flash", "anthropic/claude-opus-4.8"} <= ids
    assert "google/gemini-2.5-flash-image" in ids
    assert all(model["configured"] for model in listed["models"])
    assert listed["total"] == len(listed["models"])
    images = (
        await api.http.get("/api/v1/models", params={"capability": "image"}, headers=SERVICE)
    ).json()
    assert {m["capabilities"][0] for m in images["models"]} == {"image"}

    api.script.models.extend(REMOTE)
    fetched = (
        await api.http.get("/api/v1/models", params={"fetch_remote": "true"}, headers=SERVICE)
    ).json()
    assert fetched["cached"] is False
    gemini = next(m for m in fetched["models"] if m["id"] == "google/gemini-2.5-flash")
    assert gemini["context_length"] == 1048576
    assert gemini["pricing"] == {"prompt": 0.0000003, "completion": 0.0000025}
    again = (
        await api.http.get("/api/v1/models", params={"fetch_remote": "true"}, headers=SERVICE)
    ).json()
    assert again["cached"] is True

    free = (await api.http.get("/api/v1/models/free", headers=SERVICE)).json()
    assert [m["id"] for m in free["all_free"]] == [
        "meta-llama/llama-4-scout:free",
        "qwen/qwen3-8b:free",
    ]
    assert free["best"]["id"] == "meta-llama/llama-4-scout:free"
    assert free["fastest"] is None  # nothing measured yet

    one = await api.http.get("/api/v1/models/qwen/qwen3-8b:free", headers=SERVICE)
    assert one.json()["is_free"] is True
    assert_error(
        await api.http.get("/api/v1/models/nobody/nothing", headers=SERVICE),
        404,
        "model_not_found",
    )
    providers = (await api.http.get("/api/v1/models/providers", headers=SERVICE)).json()
    by_name = {p["provider"]: p for p in providers["providers"]}
    assert by_name["compatible"]["available"] is True
    assert by_name["compatible"]["default_text_model"] == "google/gemini-2.5-flash"
    assert by_name["google"] == {
        "provider": "google",
        "available": False,
        "models_count": 0,
        "default_text_model": None,
        "default_image_model": None,
    }


async def test_eval_compares_in_parallel_is_operator_only_and_charges_only_answers(
    api: Gen,
) -> None:
    api.script.respond("text", "Armstrong landed Eagle by hand.")
    user = await resolve(api.http, "evaluator")
    body = {"query": QUERY, "models": ["qwen/qwen3-8b", "meta-llama/llama-4-scout"]}
    bearer = (
        await api.http.post("/api/v1/auth/token", json={"user_id": user}, headers=SERVICE)
    ).json()["access_token"]
    user_only = {"Authorization": f"Bearer {bearer}"}
    assert_error(
        await api.http.post("/api/v1/eval/compare", json=body, headers=user_only),
        403,
        "operator_only",
    )
    assert_error(
        await api.http.post(
            "/api/v1/eval/compare", json={**body, "timeout_seconds": 5}, headers=as_user(user)
        ),
        422,
        "validation_error",
    )

    compared = await api.http.post("/api/v1/eval/compare", json=body, headers=as_user(user))
    assert compared.status_code == 200, compared.text
    result = compared.json()
    assert (result["succeeded"], result["failed"]) == (2, 0)
    assert sorted(r["model"] for r in result["ranking"]) == sorted(body["models"])
    assert [r["rank"] for r in result["ranking"]] == [1, 2]
    assert result["latency"]["min_ms"] <= result["latency"]["max_ms"]
    assert result["fastest"] == result["ranking"][0]["model"]
    assert {run["output"] for run in result["results"]} == {"Armstrong landed Eagle by hand."}
    assert await api.moves(user) == [(-10, "generation")]

    # One model failing is a result, not an error.
    api.script.fail("text", 400)
    report = await api.http.post("/api/v1/eval/compare/report", json=body, headers=as_user(user))
    assert report.status_code == 200, report.text
    assert (report.json()["comparison"]["succeeded"], report.json()["comparison"]["failed"]) == (
        1,
        1,
    )
    assert "1 succeeded, 1 failed" in report.json()["report"]
    # None answering: 502, and the hold is released.
    api.script.fail("text", 400, times=2)
    failed = await api.http.post("/api/v1/eval/compare", json=body, headers=as_user(user))
    assert_error(failed, 502, "eval_failed")
    # Newest first: the third hold and its release; the two answered comparisons captured.
    assert await api.moves(user) == [(10, "refund")] + [(-10, "generation")] * 3

    sets = (await api.http.get("/api/v1/eval/models", headers=SERVICE)).json()
    assert sets["presets"]["verified"] == len(sets["sets"]["verified"])
    assert "anthropic/claude-opus-4.8" in sets["sets"]["verified"]
    free = (await api.http.get("/api/v1/models/free", headers=SERVICE)).json()
    assert free["note"]


# --- entities, content, re-grounding ----------------------------------------------------------


async def test_entity_search_goes_to_the_clockchain_and_is_empty_without_it(
    make_api: MakeGen, clockchain_peer: ClockchainPeer
) -> None:
    api = await make_api()
    user = await resolve(api.http, "searcher")
    found = (
        await api.http.get(
            "/api/v1/entities/search", params={"q": "armstrong"}, headers=as_user(user)
        )
    ).json()
    assert found == {
        "results": [
            {
                "id": "fig_armstrong",
                "display_name": "Neil Armstrong",
                "entity_type": "person",
                "score": 1.0,
            }
        ],
        "query": "armstrong",
        "total": 1,
    }
    assert ("GET", "/api/v1/figures/search", {"q": "armstrong", "limit": "20"}) in (
        clockchain_peer.received
    )
    assert_error(
        await api.http.get("/api/v1/entities/search", params={"q": ""}, headers=SERVICE),
        422,
        "validation_error",
    )
    off = await make_api(clockchain=False)
    empty = await off.http.get("/api/v1/entities/search", params={"q": "x"}, headers=SERVICE)
    assert empty.json() == {"results": [], "query": "x", "total": 0}


async def test_content_comes_from_stored_public_scenes_and_the_clockchain(
    api: Gen, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await resolve(api.http, "curator")
    public = await api.sync(as_user(user), {"query": QUERY, "generate_image": True})
    await api.sync(as_user(user), {"query": QUERY, "visibility": "private"})
    # The scripted scene is on 20 July: make today that day.
    monkeypatch.setattr(discovery_routes, "utcnow", lambda: datetime(2026, 7, 20, 9, tzinfo=UTC))
    today = (await api.http.get("/api/v1/content/today", headers=SERVICE)).json()["items"]
    assert [(i["source"], i["id"]) for i in today] == [
        ("timepoint", public["id"]),
        ("clockchain", "/1969/july/20/2017/us/texas/houston/apollo-11-landing"),
    ]
    assert today[0]["image_url"].startswith("http://127.0.0.1")
    weekly = (await api.http.get("/api/v1/content/weekly-prompt", headers=SERVICE)).json()
    assert weekly["prompt"] == QUERY
    assert weekly["week"] == "2026-W30"
    featured = (await api.http.get("/api/v1/content/featured", headers=SERVICE)).json()
    assert [item["id"] for item in featured["items"]] == [public["id"]]
    monkeypatch.setattr(discovery_routes, "utcnow", lambda: datetime(2026, 1, 2, tzinfo=UTC))
    assert (await api.http.get("/api/v1/content/today", headers=SERVICE)).json() == {"items": []}


async def test_regrounding_is_a_background_task_with_a_status(
    api: Gen, make_api: MakeGen, clockchain_peer: ClockchainPeer
) -> None:
    url = "/api/v1/internal/entities/fig_armstrong/reground"
    user = await resolve(api.http, "not-a-service")
    bearer = (
        await api.http.post("/api/v1/auth/token", json={"user_id": user}, headers=SERVICE)
    ).json()["access_token"]
    refused = await api.http.post(
        url, json={"deep": False}, headers={"Authorization": f"Bearer {bearer}"}
    )
    assert refused.status_code in (401, 403)
    queued = await api.http.post(url, json={"deep": True, "x_handle": "@neil"}, headers=SERVICE)
    assert queued.status_code == 202, queued.text
    task = queued.json()
    assert task["status"] == "queued"
    assert task["task_id"].startswith("rg_")
    await api.app.state.generation.tasks.wait()
    status = (await api.http.get(f"{url}/{task['task_id']}", headers=SERVICE)).json()
    assert status["status"] == "completed", status
    assert status["confidence"] == 0.95
    assert status["grounding_model"] == "google/gemini-2.5-flash"
    grounded = [body for method, path, body in clockchain_peer.received if method == "PATCH"]
    assert grounded[0]["confidence"] == 0.95
    assert grounded[0]["deep"] is True
    assert grounded[0]["grounding"]["verified_facts"]

    unknown = await api.http.post(
        "/api/v1/internal/entities/fig_nobody/reground", json={}, headers=SERVICE
    )
    await api.app.state.generation.tasks.wait()
    failed = (
        await api.http.get(
            f"/api/v1/internal/entities/fig_nobody/reground/{unknown.json()['task_id']}",
            headers=SERVICE,
        )
    ).json()
    assert failed["status"] == "failed"
    assert "404" in failed["error"]
    assert_error(
        await api.http.get(
            f"/api/v1/internal/entities/fig_aldrin/reground/{task['task_id']}", headers=SERVICE
        ),
        404,
        "task_not_found",
    )
    off = await make_api(clockchain=False)
    assert_error(await off.http.post(url, json={}, headers=SERVICE), 503, "clockchain_unavailable")
