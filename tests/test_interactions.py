"""Talking to a scene's people through the HTTP API, on SQLite and PostgreSQL: Tollhouse
under uvicorn, the real `openai` SDK talking to the scripted LLM peer. Every route, every
contract error, the money on each ending, sessions across two app instances, SSE frames."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import pytest

from gen_support import ADMIN, Gen, MakeGen, frames, seed_scene
from llm_peer import LLMPeer
from llm_script import Call
from scene_script import QUERY, script_scene
from support import SERVICE, as_user, assert_error, resolve
from tollhouse.generation.models import Timepoint

pytestmark = pytest.mark.anyio

API = "/api/v1/interactions"
REPLY = {"response": "We came in peace, for all mankind.", "emotional_tone": "proud"}


def _speaker(call: Call) -> str:
    found = re.search(r"as (.+?)[,.]", call.prompt.rsplit("\n", 1)[-1])
    return found.group(1) if found else "?"


async def scene(gen: Gen, user: str, visibility: str = "public") -> str:
    """A completed Apollo 11 scene owned by `user`, seeded (no generation, no charge)."""
    return await seed_scene(gen, user, visibility)


async def wait_for_moves(gen: Gen, user: str, expected: list[tuple[int, str]]) -> None:
    """The server settles a dropped stream on its own time: poll (bounded) until it has."""
    for _ in range(500):
        if await gen.moves(user) == expected:
            return
        await asyncio.sleep(0.01)
    assert await gen.moves(user) == expected


# --- chat ---------------------------------------------------------------------------------


async def test_chat_answers_in_the_characters_voice_and_charges_one_credit(gen: Gen) -> None:
    user = await resolve(gen.http, "chatter")
    # A scene made by a real run: what the pipeline saves is what the characters speak from.
    made = await gen.sync(as_user(user), {"query": QUERY})
    timepoint = made["id"]
    gen.script.calls.clear()
    gen.script.respond("CharacterReply", REPLY)
    response = await gen.http.post(
        f"{API}/{timepoint}/chat",
        json={"character": "neil ARMSTRONG", "message": "How did the landing feel?"},
        headers=as_user(user),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["character_name"] == "Neil Armstrong"
    assert body["response"] == REPLY["response"]
    assert body["emotional_tone"] == "proud"
    assert body["session_id"] is None
    assert isinstance(body["latency_ms"], int)
    (call,) = gen.script.calls
    assert call.schema_name == "CharacterReply"
    # The bio, the date, the place, the era and the scene reach the model; the question too.
    for fact in (
        "You are Neil Armstrong",
        "Calm under load",
        "Short radio phrases",
        "Focused; relief held back",
        "took part in the Apollo 11 mission",
        "20 July 1969",
        "Tranquility Base",
        "Space Race",
        "Lunar Module Eagle",
        "The engine has just shut down",
    ):
        assert fact in call.system, fact
    assert "How did the landing feel?" in call.prompt
    assert await gen.moves(user) == [(-1, "chat"), (-5, "generation")]
    assert await gen.balance(user) == 50 - 5 - 1


async def test_chat_text_format_and_model_override(gen: Gen) -> None:
    timepoint = await scene(gen, await resolve(gen.http, "owner"))
    gen.script.calls.clear()
    gen.script.respond("text", "  Houston, it was quiet.  ")
    response = await gen.http.post(
        f"{API}/{timepoint}/chat",
        json={
            "character": "Buzz Aldrin",
            "message": "Hello",
            "response_format": "text",
            "model": "meta-llama/llama-4-scout",
        },
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "Houston, it was quiet."
    assert response.json()["emotional_tone"] is None
    (call,) = gen.script.calls
    assert call.kind == "text"
    assert call.model == "meta-llama/llama-4-scout"


async def test_every_error_comes_before_any_charge(gen: Gen) -> None:
    owner = await resolve(gen.http, "owner")
    other = await resolve(gen.http, "other")
    public = await scene(gen, owner)
    private = await scene(gen, owner, "private")
    failed = await seed_scene(gen, owner, characters=0)
    gen.script.calls.clear()
    chat = {"character": "Neil Armstrong", "message": "hi"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (f"{public}/chat", {"character": "Napoleon", "message": "hi"}, 404, "character_not_found"),
        (f"{uuid.uuid4()}/chat", chat, 404, "timepoint_not_found"),
        (f"{failed}/chat", chat, 404, "no_character_data"),
        (f"{private}/chat", chat, 403, "timepoint_private"),
        (f"{public}/chat", {"character": "Neil Armstrong", "message": ""}, 422, "validation_error"),
        (f"{public}/chat", {**chat, "response_format": "xml"}, 422, "validation_error"),
        (f"{public}/chat", {**chat, "session_id": "not-mine-" + "x" * 40}, 422, "validation_error"),
        (f"{public}/dialog", {"characters": ["Napoleon"]}, 404, "no_matching_characters"),
        (f"{public}/dialog", {"num_lines": 11}, 422, "validation_error"),
        (f"{public}/dialog", {"num_lines": 0}, 422, "validation_error"),
        (f"{public}/survey", {"questions": []}, 422, "validation_error"),
        (f"{public}/survey", {"questions": ["q"], "mode": "both"}, 422, "validation_error"),
        (f"{failed}/survey", {"questions": ["q"]}, 404, "no_character_data"),
        (f"{public}/chat/stream", {"character": "Nobody", "message": "x"}, 404,
         "character_not_found"),
        (f"{private}/dialog/stream", {}, 403, "timepoint_private"),
        (f"{public}/survey/stream", {"questions": ["q"], "characters": []}, 404,
         "no_matching_characters"),
    ]  # fmt: skip
    for path, body, status, code in cases:
        response = await gen.http.post(f"{API}/{path}", json=body, headers=as_user(other))
        error = assert_error(response, status, code)
        if code == "character_not_found":
            assert (
                "Available: ['Neil Armstrong', 'Buzz Aldrin', 'Charlie Duke']" in (error["message"])
            )
    assert gen.script.calls == []
    assert await gen.moves(other) == []


async def test_without_a_provider_interactions_are_503_and_free(make_gen: MakeGen) -> None:
    gen = await make_gen(provider=False)
    user = await resolve(gen.http, "nobody")
    for path in ("chat", "dialog/stream", "survey"):
        response = await gen.http.post(
            f"{API}/{uuid.uuid4()}/{path}",
            json={"character": "x", "message": "x", "questions": ["q"]},
            headers=as_user(user),
        )
        assert_error(response, 503, "no_llm_provider")
    assert await gen.moves(user) == []


async def test_short_balance_is_402_priced_from_the_cost_table(gen: Gen) -> None:
    user = await resolve(gen.http, "poor")
    timepoint = await scene(gen, user)
    response = await gen.http.put(
        "/api/v1/credits/admin/costs", json={"costs": {"chat": 100, "survey": 100}}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    for path, body in (
        ("chat", {"character": "Neil Armstrong", "message": "hi"}),
        ("survey/stream", {"questions": ["Why?"]}),
    ):
        response = await gen.http.post(
            f"{API}/{timepoint}/{path}", json=body, headers=as_user(user)
        )
        assert_error(response, 402, "insufficient_credits")
    assert await gen.moves(user) == []


async def test_a_timeout_is_408_and_releases_the_hold(make_gen: MakeGen, llm_peer: LLMPeer) -> None:
    script_scene(llm_peer.script)
    gen = await make_gen(chat_timeout_seconds=0.2, survey_timeout_seconds=0.2)
    user = await resolve(gen.http, "patient")
    timepoint = await scene(gen, user)
    llm_peer.script.latency = 2
    chat = {"character": "Neil Armstrong", "message": "hi"}
    response = await gen.http.post(f"{API}/{timepoint}/chat", json=chat, headers=as_user(user))
    assert_error(response, 408, "interaction_timeout")
    assert await gen.moves(user) == [(1, "refund"), (-1, "chat")]
    # The stream says so in a frame, and refunds the same way.
    response = await gen.http.post(
        f"{API}/{timepoint}/survey/stream", json={"questions": ["Why?"]}, headers=as_user(user)
    )
    assert response.status_code == 200
    last = frames(response.text)[-1]
    assert last["event"] == "error"
    assert last["data"]["code"] == "interaction_timeout"
    assert last["data"]["status"] == 408
    assert await gen.moves(user) == [
        (3, "refund"), (-3, "chat"), (1, "refund"), (-1, "chat")
    ]  # fmt: skip


async def test_an_llm_failure_is_502_and_releases_the_hold(gen: Gen) -> None:
    user = await resolve(gen.http, "unlucky")
    timepoint = await scene(gen, user)
    gen.script.fail("*", 500, times=1)
    response = await gen.http.post(
        f"{API}/{timepoint}/dialog", json={"num_lines": 2}, headers=as_user(user)
    )
    assert_error(response, 502, "interaction_failed")
    assert await gen.moves(user) == [(2, "refund"), (-2, "chat")]
    assert await gen.balance(user) == 50


async def test_a_stream_whose_llm_fails_says_so_and_releases_the_hold(gen: Gen) -> None:
    user = await resolve(gen.http, "broken-stream")
    timepoint = await scene(gen, user)
    gen.script.fail("*", 503, times=1)
    response = await gen.http.post(
        f"{API}/{timepoint}/chat/stream",
        json={"character": "Neil Armstrong", "message": "Hello?", "save_session": True},
        headers=as_user(user),
    )
    assert response.status_code == 200
    events = frames(response.text)
    assert [event["event"] for event in events] == ["start", "error"]
    assert events[-1]["data"]["code"] == "interaction_failed"
    assert events[-1]["data"]["status"] == 502
    assert await gen.moves(user) == [(1, "refund"), (-1, "chat")]
    listed = await gen.http.get(f"{API}/sessions/{timepoint}", headers=as_user(user))
    assert listed.json()["total"] == 0


async def test_a_permissive_scene_refuses_a_restricted_model_before_charging(gen: Gen) -> None:
    user = await resolve(gen.http, "open-weights")
    timepoint = await seed_scene(gen, user)
    async with gen.app.state.database.session() as session:
        row = await session.get(Timepoint, uuid.UUID(timepoint))
        assert row is not None
        row.tdf_payload = {**(row.tdf_payload or {}), "model_permissiveness": "permissive"}
    response = await gen.http.post(
        f"{API}/{timepoint}/chat",
        json={"character": "Neil Armstrong", "message": "hi", "model": "openai/gpt-4o"},
        headers=as_user(user),
    )
    assert_error(response, 422, "restricted_model")
    assert await gen.moves(user) == []


# --- chat streams and sessions ----------------------------------------------------------------


async def test_a_chat_stream_sends_tokens_then_the_whole_reply_and_is_charged(gen: Gen) -> None:
    user = await resolve(gen.http, "streamer")
    timepoint = await scene(gen, user)
    gen.script.respond("text", "The Eagle has landed, and so have we, gentlemen.")
    response = await gen.http.post(
        f"{API}/{timepoint}/chat/stream",
        json={"character": "Neil Armstrong", "message": "Report?", "save_session": True},
        headers=as_user(user),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    events = frames(response.text)
    assert events[0] == {"event": "start", "data": {"character_name": "Neil Armstrong"},
                         "error": None}  # fmt: skip
    tokens = [e["data"]["text"] for e in events if e["event"] == "token"]
    assert len(tokens) > 1
    done = events[-1]
    assert done["event"] == "done"
    assert done["data"]["response"] == "".join(tokens).strip()
    assert done["data"]["response"] == "The Eagle has landed, and so have we, gentlemen."
    assert await gen.moves(user) == [(-1, "chat")]
    stored = await gen.http.get(
        f"{API}/session/{done['data']['session_id']}", headers=as_user(user)
    )
    assert stored.status_code == 200, stored.text
    assert [m["role"] for m in stored.json()["messages"]] == ["user", "character"]


async def test_a_client_that_leaves_a_stream_before_the_answer_pays_nothing(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    script_scene(llm_peer.script)
    gen = await make_gen(sse_keepalive_seconds=0.02)
    user = await resolve(gen.http, "leaver")
    timepoint = await scene(gen, user)
    llm_peer.script.latency = 3
    async with gen.http.stream(
        "POST",
        f"{API}/{timepoint}/chat/stream",
        json={"character": "Neil Armstrong", "message": "Hello?", "save_session": True},
        headers=as_user(user),
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                assert json.loads(line.removeprefix("data: "))["event"] == "start"
                break
    await wait_for_moves(gen, user, [(1, "refund"), (-1, "chat")])
    sessions = await gen.http.get(f"{API}/sessions/{timepoint}", headers=as_user(user))
    assert sessions.json() == {"sessions": [], "total": 0}


async def test_sessions_keep_the_history_and_belong_to_their_owner(gen: Gen) -> None:
    owner = await resolve(gen.http, "owner")
    other = await resolve(gen.http, "intruder")
    timepoint = await scene(gen, owner)
    gen.script.respond("CharacterReply", lambda call: {
        "response": f"Answer to: {call.prompt.rsplit('says to you', 1)[-1].split(chr(10))[1]}",
        "emotional_tone": "dry",
    })  # fmt: skip
    url = f"{API}/{timepoint}/chat"
    first = await gen.http.post(
        url,
        json={"character": "Buzz Aldrin", "message": "What is the view?", "save_session": True},
        headers=as_user(owner),
    )
    session_id = first.json()["session_id"]
    assert session_id
    gen.script.calls.clear()
    second = await gen.http.post(
        url,
        json={"character": "Buzz Aldrin", "message": "And now?", "session_id": session_id},
        headers=as_user(owner),
    )
    assert second.json()["session_id"] == session_id
    # The second turn sees the first.
    assert "Visitor: What is the view?" in gen.script.calls[0].prompt
    assert "Buzz Aldrin: Answer to: What is the view?" in gen.script.calls[0].prompt

    read = await gen.http.get(f"{API}/session/{session_id}", headers=as_user(owner))
    body = read.json()
    assert body["character_name"] == "Buzz Aldrin"
    assert body["timepoint_id"] == timepoint
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "What is the view?"),
        ("character", "Answer to: What is the view?"),
        ("user", "And now?"),
        ("character", "Answer to: And now?"),
    ]
    listed = (await gen.http.get(f"{API}/sessions/{timepoint}", headers=as_user(owner))).json()
    assert listed["total"] == 1
    (summary,) = listed["sessions"]
    assert summary["message_count"] == 4
    assert summary["last_message_preview"] == "Answer to: And now?"

    # Someone else: not found on every session route, and nothing of theirs is charged.
    for method, path in (("GET", f"session/{session_id}"), ("DELETE", f"session/{session_id}")):
        assert_error(
            await gen.http.request(method, f"{API}/{path}", headers=as_user(other)),
            404,
            "session_not_found",
        )
    using = await gen.http.post(
        url,
        json={"character": "Buzz Aldrin", "message": "hi", "session_id": session_id},
        headers=as_user(other),
    )
    assert_error(using, 404, "session_not_found")
    assert (await gen.http.get(f"{API}/sessions/{timepoint}", headers=as_user(other))).json() == {
        "sessions": [],
        "total": 0,
    }
    assert await gen.moves(other) == []

    # An id nobody has is echoed back and nothing is stored.
    echoed = await gen.http.post(
        url,
        json={"character": "Buzz Aldrin", "message": "hi", "session_id": "nope"},
        headers=as_user(owner),
    )
    assert echoed.json()["session_id"] == "nope"
    assert_error(await gen.http.get(f"{API}/session/nope", headers=as_user(owner)), 404,
                 "session_not_found")  # fmt: skip

    deleted = await gen.http.delete(f"{API}/session/{session_id}", headers=as_user(owner))
    assert deleted.json() == {"deleted": True, "session_id": session_id}
    assert (await gen.http.get(f"{API}/session/{session_id}", headers=as_user(owner))).status_code
    assert (await gen.http.get(f"{API}/sessions/{timepoint}", headers=as_user(owner))).json()[
        "total"
    ] == 0


async def test_a_session_started_on_one_instance_continues_on_another(
    make_gen: MakeGen, llm_peer: LLMPeer
) -> None:
    script_scene(llm_peer.script)
    first, second = await make_gen(), await make_gen()
    user = await resolve(first.http, "roamer")
    timepoint = await scene(first, user)
    llm_peer.script.respond("CharacterReply", REPLY)
    started = await first.http.post(
        f"{API}/{timepoint}/chat",
        json={"character": "Charlie Duke", "message": "Copy?", "save_session": True},
        headers=as_user(user),
    )
    session_id = started.json()["session_id"]
    llm_peer.script.calls.clear()
    continued = await second.http.post(
        f"{API}/{timepoint}/chat",
        json={"character": "Charlie Duke", "message": "Again?", "session_id": session_id},
        headers=as_user(user),
    )
    assert continued.status_code == 200, continued.text
    assert "Visitor: Copy?" in llm_peer.script.calls[0].prompt
    read = (await first.http.get(f"{API}/session/{session_id}", headers=as_user(user))).json()
    assert len(read["messages"]) == 4


async def test_sessions_are_exported_and_erased_with_the_user(gen: Gen) -> None:
    user = await resolve(gen.http, "leaving")
    timepoint = await scene(gen, user)
    gen.script.respond("CharacterReply", REPLY)
    chat = await gen.http.post(
        f"{API}/{timepoint}/chat",
        json={"character": "Neil Armstrong", "message": "Bye", "save_session": True},
        headers=as_user(user),
    )
    session_id = chat.json()["session_id"]
    export = (await gen.http.get("/api/v1/users/me/export", headers=as_user(user))).json()
    (exported,) = export["chat_sessions"]
    assert exported["id"] == session_id
    assert [m["content"] for m in exported["messages"]] == ["Bye", REPLY["response"]]
    erased = await gen.http.delete("/api/v1/users/me", headers=as_user(user))
    assert erased.status_code in (200, 204), erased.text
    assert_error(await gen.http.get(f"{API}/session/{session_id}", headers=ADMIN), 404,
                 "session_not_found")  # fmt: skip


# --- dialog ---------------------------------------------------------------------------------


def _director(order: list[str]) -> Any:
    """Turns naming `order`'s speakers one after another, then the end of the exchange."""

    def turn(call: Call) -> dict[str, Any]:
        said = call.prompt.split("## Said so far", 1)[1]
        new = said.count(": NEW ")
        if new >= len(order):
            return {"speaker": "", "tone": "", "end": True}
        return {"speaker": order[new], "tone": f"tone{new}", "end": False}

    return turn


async def test_dialog_the_model_picks_who_speaks_and_when_it_ends(gen: Gen) -> None:
    user = await resolve(gen.http, "director")
    timepoint = await scene(gen, user)
    gen.script.calls.clear()
    gen.script.respond("Turn", _director(["Charlie Duke", "Neil Armstrong", "Charlie Duke"]))
    gen.script.respond("text", lambda call: f"NEW line by {_speaker(call)}")
    response = await gen.http.post(
        f"{API}/{timepoint}/dialog",
        json={"num_lines": 5, "prompt": "Houston asks for a status report"},
        headers=as_user(user),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(line["speaker"], line["tone"]) for line in body["dialog"]] == [
        ("Charlie Duke", "tone0"), ("Neil Armstrong", "tone1"), ("Charlie Duke", "tone2")
    ]  # fmt: skip
    assert body["dialog"][0]["text"] == "NEW line by Charlie Duke"
    assert body["context"] == "Houston asks for a status report"
    assert body["characters_involved"] == ["Charlie Duke", "Neil Armstrong"]
    # Four director calls (the last ends it) and three lines, each seeing what came before:
    # the scene's own dialog, then the new lines.
    kinds = [call.schema_name or call.kind for call in gen.script.calls]
    assert kinds == ["Turn", "text", "Turn", "text", "Turn", "text", "Turn"]
    third_line = gen.script.calls[5]
    assert "The Eagle has landed" in third_line.prompt
    assert "Neil Armstrong: NEW line by Neil Armstrong" in third_line.prompt
    assert "You are Charlie Duke" in third_line.system
    assert await gen.moves(user) == [(-2, "chat")]


async def test_dialog_in_one_batch_call_keeps_to_the_chosen_people(gen: Gen) -> None:
    timepoint = await scene(gen, await resolve(gen.http, "batcher"))
    gen.script.calls.clear()
    lines = [
        {"speaker": "buzz aldrin", "text": "Contact light.", "tone": "clipped"},
        {"speaker": "Napoleon", "text": "Où suis-je ?", "tone": "lost"},
        {"speaker": "Neil Armstrong", "text": "Engine stop.", "tone": "steady"},
        {"speaker": "Buzz Aldrin", "text": "Over.", "tone": "dry"},
    ]
    gen.script.respond("DialogScript", {"lines": lines})
    response = await gen.http.post(
        f"{API}/{timepoint}/dialog",
        json={"characters": ["Buzz Aldrin", "NEIL ARMSTRONG"], "sequential": False, "num_lines": 2},
        headers=SERVICE,
    )
    body = response.json()
    assert [(line["speaker"], line["text"]) for line in body["dialog"]] == [
        ("Buzz Aldrin", "Contact light."), ("Neil Armstrong", "Engine stop.")
    ]  # fmt: skip
    assert [call.schema_name for call in gen.script.calls] == ["DialogScript"]


async def test_a_dialog_stream_sends_tokens_lines_and_the_whole_dialog(gen: Gen) -> None:
    user = await resolve(gen.http, "listener")
    timepoint = await scene(gen, user)
    gen.script.respond("Turn", _director(["Buzz Aldrin", "Neil Armstrong"]))
    gen.script.respond("text", lambda call: f"NEW words from {_speaker(call)}")
    response = await gen.http.post(
        f"{API}/{timepoint}/dialog/stream", json={"num_lines": 2}, headers=as_user(user)
    )
    events = frames(response.text)
    names = [event["event"] for event in events]
    assert names[0] == "start"
    assert names[-1] == "done"
    assert names.count("line") == 2
    assert names.index("token") < names.index("line")
    lines = [event["data"] for event in events if event["event"] == "line"]
    assert lines == events[-1]["data"]["dialog"]
    assert lines[1]["text"] == "NEW words from Neil Armstrong"
    assert await gen.moves(user) == [(-2, "chat")]


# --- survey ---------------------------------------------------------------------------------


def _survey_reply(call: Call) -> dict[str, Any]:
    return {
        "response": f"{_speaker(call)} on {call.prompt.split('## You are asked', 1)[1].split()[0]}",
        "sentiment": "positive",
        "key_points": ["fuel", "rocks"],
        "emotional_tone": "calm",
    }


@pytest.mark.parametrize(("mode", "chained"), [("parallel", False), ("sequential", True)])
async def test_survey_asks_everyone_everything(gen: Gen, mode: str, chained: bool) -> None:
    user = await resolve(gen.http, "pollster")
    timepoint = await scene(gen, user)
    gen.script.calls.clear()
    gen.script.respond("SurveyReply", _survey_reply)
    gen.script.respond("text", "They agree the landing was close.")
    response = await gen.http.post(
        f"{API}/{timepoint}/survey",
        json={
            "characters": ["Neil Armstrong", "Buzz Aldrin"],
            "questions": ["Fuel?", "Fear?"],
            "mode": mode,
            "chain_prompts": True,
        },
        headers=as_user(user),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["timepoint_id"] == timepoint
    assert body["mode"] == mode
    assert body["total_characters"] == 2
    assert body["summary"] == "They agree the landing was close."
    assert [(r["character_name"], r["question"]) for r in body["responses"]] == [
        ("Neil Armstrong", "Fuel?"), ("Neil Armstrong", "Fear?"),
        ("Buzz Aldrin", "Fuel?"), ("Buzz Aldrin", "Fear?"),
    ]  # fmt: skip
    first = body["responses"][0]
    assert first["sentiment"] == "positive"
    assert first["key_points"] == ["fuel", "rocks"]
    assert first["emotional_tone"] == "calm"
    # chain_prompts shows earlier answers to later characters, in sequential mode only.
    buzz = [c for c in gen.script.calls if c.schema_name and "You are Buzz Aldrin" in c.system]
    assert ("Neil Armstrong on Fuel?" in buzz[0].prompt) is chained
    assert await gen.moves(user) == [(-3, "chat")]


async def test_a_survey_stream_asks_one_at_a_time_and_reads_each_answer(gen: Gen) -> None:
    user = await resolve(gen.http, "streamed-poll")
    timepoint = await scene(gen, user)
    gen.script.respond("text", lambda call: "Summary." if "summarise" in call.system else "Aye.")
    gen.script.respond(
        "AnswerReading", {"sentiment": "mixed", "key_points": ["aye"], "emotional_tone": "terse"}
    )
    response = await gen.http.post(
        f"{API}/{timepoint}/survey/stream",
        json={"questions": ["Ready?"], "include_summary": True},
        headers=as_user(user),
    )
    events = frames(response.text)
    answers = [event["data"] for event in events if event["event"] == "response"]
    assert [a["character_name"] for a in answers] == [
        "Neil Armstrong", "Buzz Aldrin", "Charlie Duke"
    ]  # fmt: skip
    assert answers[0] == {
        "character_name": "Neil Armstrong", "question": "Ready?", "response": "Aye.",
        "sentiment": "mixed", "key_points": ["aye"], "emotional_tone": "terse",
    }  # fmt: skip
    assert next(e for e in events if e["event"] == "summary")["data"] == {"summary": "Summary."}
    done = events[-1]
    assert done["event"] == "done"
    assert done["data"]["responses"] == answers
    assert await gen.moves(user) == [(-3, "chat")]


async def test_unmetered_callers_talk_for_free(gen: Gen) -> None:
    timepoint = await scene(gen, await resolve(gen.http, "someone"))
    gen.script.respond("CharacterReply", REPLY)
    response = await gen.http.post(
        f"{API}/{timepoint}/chat",
        json={"character": "Neil Armstrong", "message": "hi", "save_session": True},
        headers=SERVICE,
    )
    assert response.status_code == 200, response.text
    session_id = response.json()["session_id"]
    # A session opened without a user is seen by callers without one only.
    assert (await gen.http.get(f"{API}/session/{session_id}", headers=SERVICE)).status_code == 200
    someone = await resolve(gen.http, "someone")
    assert_error(
        await gen.http.get(f"{API}/session/{session_id}", headers=as_user(someone)),
        404,
        "session_not_found",
    )
