"""Scene generation through the HTTP API, on SQLite and PostgreSQL: Tollhouse under uvicorn
(real SSE over a socket), the real `openai` SDK talking to the scripted LLM peer."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from callback_receiver import Receiver
from gen_support import GENERATE, REJECTED, Gen, MakeGen, frames
from llm_peer import LLMPeer
from platform_fixtures import end_user, new_project
from s3_peer import BUCKET, REGION, raw_client
from scene_script import QUERY, script_scene
from support import SERVICE, as_user, assert_error, resolve
from tollhouse.generation import launch, views
from tollhouse.generation.callbacks import CallbackSender
from tollhouse.generation.models import Timepoint
from tollhouse.generation.service import new_timepoint
from tollhouse.identity.caller import Caller, CallerKind
from tollhouse.kit.clock import utcnow

pytestmark = pytest.mark.anyio

REDIS_URL_ENV = "TOLLHOUSE_TEST_REDIS_URL"


# --- before anything is charged ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/sync", "/stream"])
async def test_without_a_provider_every_generate_route_says_what_to_set_and_charges_nothing(
    make_gen: MakeGen, path: str
) -> None:
    gen = await make_gen(provider=False)
    user = await resolve(gen.http, "nobody-configured")
    response = await gen.http.post(GENERATE + path, json={"query": QUERY}, headers=as_user(user))
    body = assert_error(response, 503, "no_llm_provider")
    assert "OPENROUTER_API_KEY" in body["message"]
    assert "LLM_BASE_URL" in body["message"]
    assert await gen.moves(user) == []
    assert await gen.balance(user) == 50
    health = (await gen.http.get("/health")).json()
    assert health["providers"] == {"google": False, "openrouter": False, "compatible": False}


async def test_status_names_the_provider_and_the_default_models(
    make_gen: MakeGen, gen: Gen
) -> None:
    status = (await gen.http.get("/api/v1/status", headers=SERVICE)).json()
    assert status["primary_provider"] == "compatible"
    assert status["models"] == {
        "judge": "google/gemini-2.5-flash",
        "creative": "google/gemini-2.5-flash",
        "image": "google/gemini-2.5-flash-image",
    }
    without = await make_gen(provider=False)
    assert (await without.http.get("/api/v1/status", headers=SERVICE)).json()[
        "primary_provider"
    ] is None


@pytest.mark.parametrize(
    "body",
    [
        {"query": "ab"},
        {"query": "x" * 501},
        {"query": "   ab   "},
        {},
        {"query": QUERY, "visibility": "secret"},
        {"query": QUERY, "llm_params": {"temperature": 3}},
        {"query": QUERY, "llm_params": {"max_tokens": 0}},
        {"query": QUERY, "llm_params": {"stop": ["a", "b", "c", "d", "e"]}},
        {"query": QUERY, "llm_params": {"system_prompt_prefix": "x" * 2001}},
        {"query": QUERY, "llm_params": {"seed": 1}},
        {"query": QUERY, "model_policy": "strict"},
        {"query": QUERY, "generate_image": "maybe"},
    ],
)
async def test_invalid_requests_are_422_and_charge_nothing(gen: Gen, body: dict[str, Any]) -> None:
    user = await resolve(gen.http, "validator")
    response = await gen.http.post(GENERATE, json=body, headers=as_user(user))
    assert_error(response, 422, "validation_error")
    assert await gen.moves(user) == []


async def test_permissive_policy_refuses_a_restricted_model_with_422(gen: Gen) -> None:
    user = await resolve(gen.http, "permissive")
    response = await gen.http.post(
        GENERATE,
        json={"query": QUERY, "model_policy": "permissive", "text_model": "openai/gpt-4o"},
        headers=as_user(user),
    )
    body = assert_error(response, 422, "restricted_model")
    assert body["detail"]["restricted"] == ["openai/gpt-4o"]
    assert await gen.moves(user) == []
    assert gen.script.calls == []


async def test_the_pre_check_uses_the_presets_own_price(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    """hd costs 10: a balance of 7 is a 402 up front (the original answered 500 and refunded
    credits it never took)."""
    script_scene(llm_peer.script)
    gen = await make_gen(signup_credits=7)
    user = await resolve(gen.http, "short")
    response = await gen.http.post(
        GENERATE + "/sync", json={"query": QUERY, "preset": "hd"}, headers=as_user(user)
    )
    assert_error(response, 402, "insufficient_credits")
    assert await gen.balance(user) == 7
    assert await gen.moves(user) == []
    mine = await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(user))
    assert mine.json()["total"] == 0
    assert gen.script.calls == []


async def test_a_callback_url_that_is_not_https_is_refused_before_charging(gen: Gen) -> None:
    user = await resolve(gen.http, "callbacker")
    for url in ("http://example.com/hook", "ftp://example.com/x", "not a url"):
        response = await gen.http.post(
            GENERATE, json={"query": QUERY, "callback_url": url}, headers=as_user(user)
        )
        assert_error(response, 400, "url_not_allowed")
    assert await gen.moves(user) == []


async def test_a_callback_url_to_a_private_address_is_refused_in_production_settings(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    script_scene(llm_peer.script)
    gen = await make_gen(allow_private_upstreams=False)
    user = await resolve(gen.http, "ssrf")
    for url in ("https://127.0.0.1/hook", "https://10.0.0.7/hook", "https://localhost/x"):
        response = await gen.http.post(
            GENERATE, json={"query": QUERY, "callback_url": url}, headers=as_user(user)
        )
        assert_error(response, 400, "url_not_allowed")
    assert await gen.moves(user) == []


# --- the three ways to run the one graph ------------------------------------------------------


async def test_async_generate_returns_at_once_then_completes_and_charges_once(gen: Gen) -> None:
    user = await resolve(gen.http, "async-user")
    response = await gen.http.post(
        GENERATE,
        json={"query": QUERY, "request_context": {"ticket": 42}},
        headers=as_user(user),
    )
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["status"] == "processing"
    assert started["message"] == f"Generation started for '{QUERY}'"
    assert started["request_context"] == {"ticket": 42}
    timepoint = await gen.finished(started["id"])
    assert timepoint["status"] == "completed", timepoint["error"]
    assert timepoint["year"] == 1969
    assert timepoint["month"] == 7
    assert timepoint["location"]
    assert timepoint["slug"].startswith("apollo-11-landing-july-1969-")
    assert timepoint["request_context"] is None  # echoed, never stored
    assert timepoint["characters"]["characters"]
    assert timepoint["dialog"]
    assert timepoint["scene"]
    assert await gen.moves(user) == [(-5, "generation")]
    assert await gen.balance(user) == 45
    mine = (await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(user))).json()
    assert [item["id"] for item in mine["items"]] == [started["id"]]
    assert mine["items"][0]["status"] == "completed"


async def test_sync_generate_answers_the_whole_timepoint(gen: Gen) -> None:
    user = await resolve(gen.http, "sync-user")
    response = await gen.http.post(
        GENERATE + "/sync",
        json={"query": QUERY, "preset": "hd", "request_context": {"a": 1}},
        headers=as_user(user),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["preset_used"] == "hd"
    assert body["generation_time_ms"] > 0
    assert body["request_context"] == {"a": 1}
    assert body["text_model_used"] == "google/gemini-2.5-flash"
    # The provider that answered (the OpenAI-compatible peer), not the one the id suggests.
    assert body["model_provider"] == "compatible"
    assert body["model_permissiveness"] == "restricted"
    assert body["metadata"]["camera"]
    assert body["moment"]
    assert body["has_image"] is False
    # hd's own price, captured.
    assert await gen.moves(user) == [(-10, "generation")]
    # Every call went to the preset's model.
    assert {call.model for call in gen.script.calls} == {"google/gemini-2.5-flash"}


async def test_text_model_override_and_permissive_default(gen: Gen) -> None:
    user = await resolve(gen.http, "models")
    response = await gen.http.post(
        GENERATE + "/sync",
        json={"query": QUERY, "text_model": "qwen/qwen3-235b"},
        headers=as_user(user),
    )
    assert response.json()["text_model_used"] == "qwen/qwen3-235b"
    assert {call.model for call in gen.script.calls} == {"qwen/qwen3-235b"}
    gen.script.calls.clear()
    response = await gen.http.post(
        GENERATE + "/sync", json={"query": QUERY, "model_policy": "permissive"}, headers=SERVICE
    )
    body = response.json()
    assert body["text_model_used"] == "meta-llama/llama-4-scout"
    assert body["model_permissiveness"] == "permissive"
    names = [call.schema_name for call in gen.script.calls]
    assert "Grounding" not in names
    assert "DialogCritique" not in names
    assert names.count("DialogScript") == 1  # one batch call, no role-play


async def test_llm_params_reach_every_call(gen: Gen) -> None:
    params = {
        "temperature": 0.3,
        "max_tokens": 900,
        "system_prompt_prefix": "Write in British English.",
    }
    response = await gen.http.post(
        GENERATE + "/sync", json={"query": QUERY, "llm_params": params}, headers=SERVICE
    )
    assert response.json()["status"] == "completed"
    assert gen.script.calls
    for call in gen.script.calls:
        assert call.body["temperature"] == 0.3
        assert call.body["max_tokens"] <= 900
        assert call.system.startswith("Write in British English.")


async def test_a_retried_async_generate_with_an_idempotency_key_is_charged_once(gen: Gen) -> None:
    user = await resolve(gen.http, "retrier")
    headers = {**as_user(user), "Idempotency-Key": "gen-1"}
    first = await gen.http.post(GENERATE, json={"query": QUERY}, headers=headers)
    again = await gen.http.post(GENERATE, json={"query": QUERY}, headers=headers)
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    await gen.finished(first.json()["id"])
    assert await gen.moves(user) == [(-5, "generation")]
    other = await gen.http.post(GENERATE, json={"query": "Another moment"}, headers=headers)
    assert_error(other, 409, "idempotency_key_reused")
    mine = (await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(user))).json()
    assert mine["total"] == 1


async def test_the_stream_sends_each_step_as_it_finishes(gen: Gen) -> None:
    user = await resolve(gen.http, "streamer")
    async with gen.http.stream(
        "POST", GENERATE + "/stream", json={"query": QUERY}, headers=as_user(user)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        body = (await response.aread()).decode()
    first = body.split("\n\n", 1)[0] + "\n\n"
    assert first == (
        'data: {"event":"start","step":"initialization","data":{"query":"'
        + QUERY
        + '","generate_image":false,"preset":"balanced"},"progress":0,"error":null}\n\n'
    )
    events = frames(body)
    steps = [(e["event"], e["step"]) for e in events]
    assert steps[0] == ("start", "initialization")
    completed = [step for event, step in steps if event == "step_complete"]
    for name in ("judge", "timeline", "scene", "characters", "moment", "camera", "dialog"):
        assert name in completed
    assert completed.index("judge") < completed.index("timeline") < completed.index("scene")
    assert completed.index("characters") < completed.index("dialog")
    judge = next(e for e in events if e["step"] == "judge")
    assert judge["progress"] == 10
    assert set(judge["data"]) == {"latency_ms", "model_used"}
    done = events[-1]
    assert done["event"] == "done"
    assert done["step"] == "complete"
    assert done["data"]["status"] == "completed"
    assert done["data"]["saved"] is True
    assert done["data"]["year"] == 1969
    # Streamed timepoints have an owner (the original saved them with none).
    mine = (await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(user))).json()
    assert [item["id"] for item in mine["items"]] == [done["data"]["timepoint_id"]]
    assert await gen.moves(user) == [(-5, "generation")]


async def test_a_client_that_leaves_the_stream_still_gets_its_timepoint(gen: Gen) -> None:
    gen.script.latency = 0.05
    user = await resolve(gen.http, "leaver")
    async with gen.http.stream(
        "POST", GENERATE + "/stream", json={"query": QUERY}, headers=as_user(user)
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                start = json.loads(line.removeprefix("data: "))
                break
    assert start["event"] == "start"
    await asyncio.sleep(0.1)
    mine = (await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(user))).json()
    timepoint_id = mine["items"][0]["id"]
    timepoint = await gen.finished(timepoint_id)
    assert timepoint["status"] == "completed"
    assert await gen.moves(user) == [(-5, "generation")]


async def test_a_stream_sends_keep_alive_comments_while_a_step_runs(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.latency = 0.15
    gen = await make_gen(sse_keepalive_seconds=0.05)
    response = await gen.http.post(GENERATE + "/stream", json={"query": QUERY}, headers=SERVICE)
    assert ": keep-alive\n\n" in response.text
    assert frames(response.text)[-1]["event"] == "done"


async def test_anyone_allowed_can_follow_a_generation_and_replay_it(gen: Gen) -> None:
    gen.script.latency = 0.02
    user = await resolve(gen.http, "followed")
    started = (await gen.http.post(GENERATE, json={"query": QUERY}, headers=as_user(user))).json()
    live = await gen.http.get(f"/api/v1/timepoints/{started['id']}/stream", headers=SERVICE)
    assert live.status_code == 200
    live_events = frames(live.text)
    assert live_events[0]["event"] == "start"
    assert live_events[-1]["event"] == "done"
    replay = await gen.http.get(f"/api/v1/timepoints/{started['id']}/stream", headers=SERVICE)
    assert frames(replay.text) == live_events


# --- failures refund --------------------------------------------------------------------------


async def test_a_judge_rejection_fails_the_timepoint_and_refunds(gen: Gen) -> None:
    gen.script.respond("JudgeVerdict", REJECTED)
    user = await resolve(gen.http, "rejected")
    response = await gen.http.post(
        GENERATE + "/stream", json={"query": "asdf asdf"}, headers=as_user(user)
    )
    events = frames(response.text)
    assert [(e["event"], e["step"]) for e in events] == [
        ("start", "initialization"),
        ("step_error", "judge"),
        ("done", "complete"),
    ]
    assert events[1]["progress"] == 10
    assert events[1]["error"] == "Query rejected by judge: not a moment in time"
    assert events[2]["data"]["status"] == "failed"
    timepoint = await gen.finished(events[2]["data"]["timepoint_id"])
    assert timepoint["status"] == "failed"
    assert timepoint["error"] == "Query rejected by judge: not a moment in time"
    assert await gen.moves(user) == [(5, "refund"), (-5, "generation")]
    assert await gen.balance(user) == 50


async def test_a_failed_critical_step_refunds_and_names_the_step(gen: Gen) -> None:
    gen.script.fail("Timeline", 500, times=50)
    user = await resolve(gen.http, "timeline-down")
    response = await gen.http.post(GENERATE + "/sync", json={"query": QUERY}, headers=as_user(user))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"].startswith("timeline: ")
    assert not any(call.schema_name == "SceneSetting" for call in gen.script.calls)
    assert await gen.balance(user) == 50


async def test_a_failed_non_critical_step_still_completes_the_scene(gen: Gen) -> None:
    gen.script.fail("Grounding", 503, times=50)
    user = await resolve(gen.http, "grounding-down")
    body = await gen.sync(as_user(user), {"query": QUERY})
    assert body["status"] == "completed"
    assert body["scene"]
    assert body["dialog"]
    assert body["grounding"] is None
    assert await gen.balance(user) == 45


async def test_a_timeout_is_504_and_refunds(make_gen: MakeGen, llm_peer: LLMPeer) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.latency = 0.5
    gen = await make_gen(generation_timeout_seconds=0.3)
    user = await resolve(gen.http, "slowpoke")
    response = await gen.http.post(GENERATE + "/sync", json={"query": QUERY}, headers=as_user(user))
    assert_error(response, 504, "generation_timeout")
    assert await gen.moves(user) == [(5, "refund"), (-5, "generation")]
    mine = (await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(user))).json()
    assert mine["items"][0]["status"] == "failed"


async def test_a_server_shutdown_refunds_the_runs_in_flight(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    script_scene(llm_peer.script)
    llm_peer.script.latency = 0.3
    gen = await make_gen()
    user = await resolve(gen.http, "interrupted")
    started = (await gen.http.post(GENERATE, json={"query": QUERY}, headers=as_user(user))).json()
    await asyncio.sleep(0.1)
    await gen.app.state.generation.close()
    assert await gen.moves(user) == [(5, "refund"), (-5, "generation")]
    row = await gen.http.get(f"/api/v1/timepoints/{started['id']}", headers=as_user(user))
    assert row.json()["status"] == "failed"
    assert row.json()["error"] == "Generation stopped: the server shut down"


async def test_a_run_that_cannot_be_saved_is_refunded_and_says_so(
    make_gen: MakeGen, llm_peer: LLMPeer, tmp_path: Path
) -> None:
    """The image store is broken (its folder is a file): the stream ends with the contract's
    `database_save` error, the row is failed and the hold released."""
    script_scene(llm_peer.script)
    (tmp_path / "media").write_text("not a folder")
    gen = await make_gen()
    user = await resolve(gen.http, "unsaved")
    response = await gen.http.post(
        GENERATE + "/stream", json={"query": QUERY, "generate_image": True}, headers=as_user(user)
    )
    last = frames(response.text)[-1]
    assert last["event"] == "error"
    assert last["step"] == "database_save"
    assert last["data"]["status"] == "save_failed"
    assert last["data"]["saved"] is False
    assert await gen.moves(user) == [(5, "refund"), (-5, "generation")]
    row = await gen.http.get(
        f"/api/v1/timepoints/{last['data']['timepoint_id']}", headers=as_user(user)
    )
    assert row.json()["status"] == "failed"
    assert row.json()["error"].startswith("The timepoint could not be saved")


async def test_runs_orphaned_by_a_dead_process_are_failed_by_the_sweeper(gen: Gen) -> None:
    """A replica died mid-run: its row stays processing until the sweeper fails it (the hold
    is refunded by the ledger's own sweeper when it expires)."""
    body = await gen.sync(SERVICE, {"query": QUERY})
    domain = gen.app.state.generation
    async with domain.database.session() as session:
        row = await session.get(Timepoint, uuid.UUID(body["id"]))
        assert row is not None
        row.status = "processing"
        row.created_at = utcnow() - domain.hold_ttl - timedelta(seconds=1)
        await session.commit()
    assert await domain.sweep_abandoned() == 1
    assert await domain.sweep_abandoned() == 0
    swept = (await gen.http.get(f"/api/v1/timepoints/{body['id']}", headers=SERVICE)).json()
    assert swept["status"] == "failed"
    assert swept["error"] == "Generation was interrupted before it finished"


async def test_a_follower_of_a_run_whose_server_died_is_told_so(
    gen: Gen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No event will ever come (the process running it is gone): once the run's time is up the
    follower gets an `interrupted` error instead of keep-alives forever."""
    monkeypatch.setattr(launch, "FOLLOW_GRACE_SECONDS", 0.0)
    domain = gen.app.state.generation
    domain.settings.generation_timeout_seconds = 0.3
    orphan = uuid.uuid4()
    async with domain.database.session() as session:
        home = gen.app.state.identity.home_project_id
        caller = Caller(CallerKind.SYSTEM, home)
        session.add(
            new_timepoint(
                caller, orphan, QUERY, "balanced", visibility="public", generate_image=False
            )
        )
        await session.commit()
    response = await gen.http.get(f"/api/v1/timepoints/{orphan}/stream", headers=SERVICE)
    assert frames(response.text) == [
        {
            "event": "error",
            "step": "interrupted",
            "data": None,
            "progress": 0,
            "error": "The generation stopped without finishing: the server running it went away.",
        }
    ]


async def test_unmetered_gateway_calls_are_not_charged(gen: Gen) -> None:
    """A system caller (service key, no user) generates for free; its timepoint is public."""
    body = await gen.sync(SERVICE, {"query": QUERY, "visibility": "private"})
    assert body["status"] == "completed"
    assert body["visibility"] == "public"


# --- images -----------------------------------------------------------------------------------


async def test_an_image_is_stored_and_served_by_an_absolute_url(gen: Gen) -> None:
    user = await resolve(gen.http, "painter")
    body = await gen.sync(as_user(user), {"query": QUERY, "generate_image": True})
    assert body["status"] == "completed"
    assert body["has_image"] is True
    assert body["image_base64"] is None
    assert body["image_model_used"] == "google/gemini-2.5-flash-image"
    # Public: absolute, and a browser loads it without credentials.
    assert body["image_url"] == f"{gen.http.base_url}/api/v1/timepoints/{body['id']}/image"
    async with httpx.AsyncClient() as browser:
        image = await browser.get(body["image_url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    inline = await gen.http.get(
        f"/api/v1/timepoints/{body['id']}", params={"include_image": "true"}, headers=SERVICE
    )
    assert inline.json()["image_base64"]
    assert inline.json()["image_url"].startswith("data:image/png;base64,iVBOR")


async def test_a_private_image_url_is_signed_and_expires(
    gen: Gen, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await resolve(gen.http, "private-painter")
    body = await gen.sync(
        as_user(user), {"query": QUERY, "generate_image": True, "visibility": "private"}
    )
    plain = f"/api/v1/timepoints/{body['id']}/image"
    assert body["image_url"].startswith(f"{gen.http.base_url}{plain}?expires=")
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(body["image_url"])).status_code == 200
        # Without the signature, or with another one, a stranger gets nothing.
        assert (await browser.get(f"{gen.http.base_url}{plain}")).status_code == 403
        forged = body["image_url"][:-4] + "0000"
        assert (await browser.get(forged)).status_code == 403
    other = await resolve(gen.http, "stranger")
    assert (await gen.http.get(plain, headers=as_user(other))).status_code == 403
    # Past its expiry the signed URL stops working.
    later = utcnow() + timedelta(hours=2)
    monkeypatch.setattr(views, "utcnow", lambda: later)
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(body["image_url"])).status_code == 403


async def test_with_a_bucket_images_go_to_s3(
    make_gen: MakeGen, llm_peer: LLMPeer, moto_endpoint: str
) -> None:
    script_scene(llm_peer.script)
    prefix = f"t-{uuid.uuid4().hex}"
    gen = await make_gen(
        s3_bucket=BUCKET,
        s3_endpoint_url=moto_endpoint,
        s3_region=REGION,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_key_prefix=prefix,
    )
    body = await gen.sync(SERVICE, {"query": QUERY, "generate_image": True})
    assert body["has_image"] is True
    stored = raw_client(moto_endpoint).get_object(
        Bucket=BUCKET, Key=f"{prefix}/timepoints/{body['id']}/image.png"
    )
    image = await gen.http.get(body["image_url"], headers=SERVICE)
    assert image.content == stored["Body"].read()
    assert image.headers["content-type"] == "image/png"


async def test_removed_timepoints_lose_their_images(gen: Gen, tmp_path: Path) -> None:
    """Permanent delete and GDPR erasure queue the image for the storage sweeper, in the
    same transaction as the row's removal."""
    user = await resolve(gen.http, "forgettable")
    made = [
        await gen.sync(as_user(user), {"query": QUERY, "generate_image": True}) for _ in range(2)
    ]
    files = [tmp_path / "media" / "timepoints" / tp["id"] / "image.png" for tp in made]
    assert all(path.exists() for path in files)
    domain = gen.app.state.generation
    deleted = await gen.http.delete(
        f"/api/v1/timepoints/{made[0]['id']}", params={"permanent": "true"}, headers=as_user(user)
    )
    assert deleted.status_code == 200
    assert await domain.purge_images() == 1
    assert not files[0].exists()
    assert files[1].exists()
    erased = await gen.http.delete("/api/v1/users/me", headers=as_user(user))
    assert erased.status_code == 200, erased.text
    assert await domain.purge_images() == 1
    assert not files[1].exists()
    assert await domain.purge_images() == 0
    gone = await gen.http.get(f"/api/v1/timepoints/{made[1]['id']}", headers=SERVICE)
    assert_error(gone, 404, "timepoint_not_found")


async def test_an_image_failure_keeps_the_scene(gen: Gen) -> None:
    gen.script.fail("image", 500, times=50)
    user = await resolve(gen.http, "no-paint")
    body = await gen.sync(as_user(user), {"query": QUERY, "generate_image": True})
    assert body["status"] == "completed"
    assert body["has_image"] is False
    image = await gen.http.get(f"/api/v1/timepoints/{body['id']}/image", headers=SERVICE)
    assert_error(image, 404, "no_image")


# --- ownership and visibility -----------------------------------------------------------------


async def _private_timepoint(gen: Gen, owner: str) -> dict[str, Any]:
    response = await gen.http.post(
        GENERATE + "/sync",
        json={"query": QUERY, "visibility": "private"},
        headers=as_user(owner),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_private_timepoint_never_leaks(make_gen: MakeGen, llm_peer: LLMPeer) -> None:
    script_scene(llm_peer.script)
    gen = await make_gen(share_url_base="https://timepointai.com/t")
    owner, other = await resolve(gen.http, "owner"), await resolve(gen.http, "other")
    private = await _private_timepoint(gen, owner)
    tid = private["id"]
    assert private["visibility"] == "private"
    assert private["share_url"] is None

    own = await gen.http.get(f"/api/v1/timepoints/{tid}", headers=as_user(owner))
    assert own.status_code == 200
    for path in (
        f"/api/v1/timepoints/{tid}",
        f"/api/v1/timepoints/slug/{private['slug']}",
        f"/api/v1/timepoints/{tid}/characters",
        f"/api/v1/timepoints/{tid}/image",
        f"/api/v1/timepoints/{tid}/stream",
    ):
        for headers in (as_user(other), SERVICE):
            response = await gen.http.get(path, headers=headers)
            body = assert_error(response, 403, "timepoint_private")
            assert body["message"] == "This timepoint is private"
    listed = (await gen.http.get("/api/v1/timepoints", headers=as_user(other))).json()
    assert tid not in [item["id"] for item in listed["items"]]
    anonymous_private = await gen.http.get(
        "/api/v1/timepoints", params={"visibility": "private"}, headers=SERVICE
    )
    assert anonymous_private.json() == {"items": [], "total": 0, "page": 1, "page_size": 20}
    owner_private = await gen.http.get(
        "/api/v1/timepoints", params={"visibility": "private"}, headers=as_user(owner)
    )
    assert [item["id"] for item in owner_private.json()["items"]] == [tid]

    public = await gen.sync(as_user(other), {"query": QUERY})
    assert public["share_url"] == f"https://timepointai.com/t/{public['slug']}"
    brief = (await gen.http.get(f"/api/v1/timepoints/{public['id']}", headers=SERVICE)).json()
    assert brief["characters"] is None
    assert brief["scene"] is None
    assert brief["dialog"] is None


async def test_another_projects_callers_never_see_the_home_projects_timepoints(gen: Gen) -> None:
    public = await gen.sync(SERVICE, {"query": QUERY})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gen.app), base_url="http://setup.test"
    ) as setup:
        keys = await new_project(setup)
        as_end_user = await end_user(setup, keys)
    tid = public["id"]
    for headers in (keys.secret, as_end_user):
        for path in (
            f"/api/v1/timepoints/{tid}",
            f"/api/v1/timepoints/slug/{public['slug']}",
            f"/api/v1/timepoints/{tid}/characters",
            f"/api/v1/timepoints/{tid}/stream",
        ):
            assert_error(await gen.http.get(path, headers=headers), 404, "timepoint_not_found")
        change = await gen.http.patch(
            f"/api/v1/timepoints/{tid}/visibility", json={"visibility": "public"}, headers=headers
        )
        assert_error(change, 404, "timepoint_not_found")
        delete = await gen.http.delete(f"/api/v1/timepoints/{tid}", headers=headers)
        assert_error(delete, 404, "timepoint_not_found")
        listed = (await gen.http.get("/api/v1/timepoints", headers=headers)).json()
        assert listed["total"] == 0
    assert (await gen.http.get(f"/api/v1/timepoints/{tid}", headers=SERVICE)).is_success


async def test_visibility_changes_are_the_owners(gen: Gen) -> None:
    owner, other = await resolve(gen.http, "v-owner"), await resolve(gen.http, "v-other")
    tid = (await _private_timepoint(gen, owner))["id"]
    path = f"/api/v1/timepoints/{tid}/visibility"
    bad = await gen.http.patch(path, json={"visibility": "secret"}, headers=as_user(owner))
    assert_error(bad, 400, "invalid_visibility")
    stranger = await gen.http.patch(path, json={"visibility": "public"}, headers=as_user(other))
    body = assert_error(stranger, 403, "not_owner")
    assert body["message"] == "Only the owner can change visibility"
    unknown = await gen.http.patch(
        f"/api/v1/timepoints/{uuid.uuid4()}/visibility",
        json={"visibility": "public"},
        headers=as_user(owner),
    )
    assert_error(unknown, 404, "timepoint_not_found")
    made_public = await gen.http.patch(path, json={"visibility": "public"}, headers=as_user(owner))
    assert made_public.status_code == 200
    assert made_public.json()["visibility"] == "public"
    assert (await gen.http.get(f"/api/v1/timepoints/{tid}", headers=as_user(other))).is_success


async def test_deleting_is_soft_by_default_and_permanent_on_request(gen: Gen) -> None:
    owner, other = await resolve(gen.http, "d-owner"), await resolve(gen.http, "d-other")
    body = await gen.sync(as_user(owner), {"query": QUERY})
    tid = body["id"]
    refused = await gen.http.delete(f"/api/v1/timepoints/{tid}", headers=as_user(other))
    assert_error(refused, 403, "not_owner")
    soft = await gen.http.delete(f"/api/v1/timepoints/{tid}", headers=as_user(owner))
    assert soft.json() == {"id": tid, "deleted": True, "message": f"Timepoint {tid} soft-deleted"}
    listed = (await gen.http.get("/api/v1/timepoints", headers=as_user(owner))).json()
    assert tid not in [item["id"] for item in listed["items"]]
    mine = (await gen.http.get("/api/v1/users/me/timepoints", headers=as_user(owner))).json()
    assert mine["total"] == 0
    still = await gen.http.get(f"/api/v1/timepoints/{tid}", headers=as_user(owner))
    assert still.json()["is_deleted"] is True
    hard = await gen.http.delete(
        f"/api/v1/timepoints/{tid}", params={"permanent": "true"}, headers=as_user(owner)
    )
    assert hard.json()["message"] == f"Timepoint {tid} permanently deleted"
    gone = await gen.http.get(f"/api/v1/timepoints/{tid}", headers=as_user(owner))
    assert_error(gone, 404, "timepoint_not_found")
    # The ledger keeps its rows and their reference.
    assert await gen.moves(owner) == [(-5, "generation")]


async def test_characters_route_lists_the_cast(gen: Gen) -> None:
    body = await gen.sync(SERVICE, {"query": QUERY})
    cast = await gen.http.get(f"/api/v1/timepoints/{body['id']}/characters", headers=SERVICE)
    assert cast.status_code == 200, cast.text
    data = cast.json()
    assert data["timepoint_id"] == body["id"]
    assert data["year"] == 1969
    assert data["total_characters"] == len(data["characters"]) == 3
    assert data["speaking_characters"] >= 1
    assert {"name", "role", "personality", "speaking_style"} <= set(data["characters"][0])


async def test_lists_page_and_filter(gen: Gen) -> None:
    user = await resolve(gen.http, "lister")
    for _ in range(3):
        await gen.http.post(GENERATE + "/sync", json={"query": QUERY}, headers=as_user(user))
    page = await gen.http.get(
        "/api/v1/timepoints", params={"page": 2, "page_size": 2}, headers=as_user(user)
    )
    assert page.json()["total"] == 3
    assert len(page.json()["items"]) == 1
    failed = await gen.http.get(
        "/api/v1/timepoints", params={"status": "failed"}, headers=as_user(user)
    )
    assert failed.json()["total"] == 0
    for params in ({"page": 0}, {"page_size": 101}, {"page_size": 0}, {"status": "odd"}):
        response = await gen.http.get("/api/v1/timepoints", params=params, headers=SERVICE)
        assert_error(response, 422, "validation_error")
    unknown = await gen.http.get(f"/api/v1/timepoints/{uuid.uuid4()}", headers=SERVICE)
    assert_error(unknown, 404, "timepoint_not_found")
    # flash-contract §8.4, lenient on purpose: an id that is not a UUID is just unknown.
    for path in ("/not-a-uuid", "/not-a-uuid/tdf", "/not-a-uuid/characters"):
        not_uuid = await gen.http.get(f"/api/v1/timepoints{path}", headers=SERVICE)
        assert_error(not_uuid, 404, "timepoint_not_found")


async def test_the_export_holds_the_users_timepoints(gen: Gen) -> None:
    user = await resolve(gen.http, "exporter")
    body = await gen.sync(as_user(user), {"query": QUERY})
    export = (await gen.http.get("/api/v1/users/me/export", headers=as_user(user))).json()
    assert [tp["id"] for tp in export["timepoints"]] == [body["id"]]
    assert export["timepoints"][0]["scene"]
    charge = next(row for row in export["credit_history"] if row["type"] == "generation")
    assert charge["reference_id"] == body["id"]


# --- callbacks, providers, replicas -----------------------------------------------------------


def _trusting_sender(tls_files: tuple[Path, Path]) -> CallbackSender:
    """The app's own sender class, trusting the test receiver's self-signed certificate."""
    return CallbackSender(
        allow_private=True,
        max_attempts=3,
        backoff_seconds=0,
        timeout_seconds=5,
        verify=ssl.create_default_context(cafile=str(tls_files[0])),
    )


async def test_the_callback_gets_the_whole_timepoint_with_the_request_context(
    make_gen: MakeGen, llm_peer: LLMPeer, receiver: Receiver, tls_files: tuple[Path, Path]
) -> None:
    script_scene(llm_peer.script)
    gen = await make_gen(allow_private_upstreams=True)  # the receiver is on loopback
    await gen.app.state.generation.callbacks.close()
    gen.app.state.generation.callbacks = _trusting_sender(tls_files)
    receiver.reset(503)  # the first attempt fails: the callback is retried
    user = await resolve(gen.http, "called-back")
    started = (
        await gen.http.post(
            GENERATE,
            json={"query": QUERY, "callback_url": receiver.url(), "request_context": {"job": 7}},
            headers=as_user(user),
        )
    ).json()
    await gen.finished(started["id"])
    for _ in range(1000):  # sent in the background after the run: a bounded wait
        if len(receiver.seen) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(receiver.seen) == 2
    body = json.loads(receiver.seen[1].body)
    assert body["id"] == started["id"]
    assert body["status"] == "completed"
    assert body["request_context"] == {"job": 7}
    assert body["preset_used"] == "balanced"
    assert body["scene"]
    assert body["dialog"]


async def test_the_google_provider_runs_the_graph_through_google_genai(
    make_gen: MakeGen, gemini_peer: LLMPeer
) -> None:
    script_scene(gemini_peer.script)
    gen = await make_gen(
        provider=False, google_api_key="g-key", google_api_base_url=gemini_peer.gemini_base_url
    )
    assert (await gen.http.get("/health")).json()["providers"]["google"] is True
    body = await gen.sync(SERVICE, {"query": QUERY})
    assert body["status"] == "completed", body
    assert body["year"] == 1969
    assert {call.protocol for call in gen.script.calls} == {"gemini"}
    assert {call.model for call in gen.script.calls} == {"gemini-2.5-flash"}


async def test_a_generation_is_followed_from_another_replica_through_redis(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    redis_url = os.environ.get(REDIS_URL_ENV)
    if not redis_url:
        pytest.skip(f"Redis event bus skipped: {REDIS_URL_ENV} is not set")
    script_scene(llm_peer.script)
    llm_peer.script.latency = 0.02
    prefix = f"tollhouse-test:{uuid.uuid4().hex}:"
    shared = {"redis_url": redis_url, "events_key_prefix": prefix}
    first, second = await make_gen(**shared), await make_gen(**shared)
    try:
        started = (await first.http.post(GENERATE, json={"query": QUERY}, headers=SERVICE)).json()
        followed = await second.http.get(
            f"/api/v1/timepoints/{started['id']}/stream", headers=SERVICE
        )
        events = frames(followed.text)
        assert events[0]["event"] == "start"
        assert events[-1]["event"] == "done"
        assert events[-1]["data"]["status"] == "completed"
        assert next(e["step"] for e in events if e["event"] == "step_complete") == "judge"
    finally:
        async with Redis.from_url(redis_url) as client:
            keys = [key async for key in client.scan_iter(f"{prefix}*")]
            if keys:
                await client.delete(*keys)
