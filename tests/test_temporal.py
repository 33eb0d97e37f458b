"""Time travel through the HTTP API, on SQLite and PostgreSQL: jumps run the real scene graph
against the scripted LLM peer; the money, the links, the carried-over scene, the chain."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gen_support import ADMIN, REJECTED, Gen, MakeGen, frames, seed_scene
from support import SERVICE, as_user, assert_error, resolve

pytestmark = pytest.mark.anyio

API = "/api/v1/temporal"


async def timepoint(gen: Gen, timepoint_id: str) -> dict[str, Any]:
    response = await gen.http.get(
        f"/api/v1/timepoints/{timepoint_id}", params={"full": "true"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_next_carries_the_scene_forward_and_inherits_owner_and_visibility(
    gen: Gen,
) -> None:
    owner = await resolve(gen.http, "traveller")
    other = await resolve(gen.http, "bystander")
    source = await seed_scene(gen, owner, "private", time_of_day="afternoon")
    gen.script.calls.clear()
    response = await gen.http.post(
        f"{API}/{source}/next", json={"units": 1, "unit": "day"}, headers=as_user(owner)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    target = body.pop("target_id")
    assert body == {
        "source_id": source, "source_year": 1969, "target_year": 1969, "direction": "next",
        "units": 1, "unit": "day", "message": "Generated moment 1 day(s) forward",
    }  # fmt: skip
    new = await timepoint(gen, target)
    assert new["status"] == "completed"
    assert (new["year"], new["month"], new["day"]) == (1969, 7, 21)
    assert new["time_of_day"] == "afternoon"
    assert new["location"] == "Tranquility Base, Sea of Tranquility, the Moon"
    assert new["visibility"] == "private"
    assert new["sequence_id"] == (await timepoint(gen, source))["sequence_id"] is not None
    # The owner's, not the caller's or nobody's: only the owner sees it.
    assert (
        await gen.http.get(f"/api/v1/timepoints/{target}", headers=as_user(owner))
    ).status_code == 200
    assert_error(
        await gen.http.get(f"/api/v1/timepoints/{target}", headers=as_user(other)),
        403,
        "timepoint_private",
    )
    # One temporal charge, captured; the scene's own generation costs nothing more.
    assert await gen.moves(owner) == [(-2, "temporal")]
    # The scene is carried forward past the judge: place, date, people, what came next.
    judge = next(call for call in gen.script.calls if call.schema_name == "JudgeVerdict")
    assert "Continuity" not in judge.prompt
    assert "1 day after" in judge.prompt
    cast = next(call for call in gen.script.calls if call.schema_name == "CharacterList")
    for carried in (
        "Same place: Tranquility Base",
        "The date is fixed: 21 July 1969, afternoon",
        "- Neil Armstrong (primary)",
        "1 day older",
        "What was about to happen: The crew expects to check systems",
        "Charlie Duke: Roger, Tranquility",
    ):
        assert carried in cast.prompt, carried
    # Linked: the new moment is the source's next, the source its prior.
    chain = await gen.http.get(f"{API}/{source}/sequence", headers=as_user(owner))
    assert [item["id"] for item in chain.json()["next"]] == [target]
    back = (await gen.http.get(f"{API}/{target}/sequence", headers=as_user(owner))).json()
    assert back["center"] == {"id": target, "year": 1969, "slug": new["slug"]}
    assert [item["id"] for item in back["prior"]] == [source]
    assert back["next"] == []


async def test_prior_links_above_the_source_but_never_overwrites_its_parent(gen: Gen) -> None:
    user = await resolve(gen.http, "historian")
    source = await seed_scene(gen, user)
    first = await gen.http.post(
        f"{API}/{source}/prior", json={"units": 2, "unit": "month"}, headers=as_user(user)
    )
    assert first.status_code == 200, first.text
    assert first.json()["message"] == "Generated moment 2 month(s) backward"
    earlier = first.json()["target_id"]
    made = await timepoint(gen, earlier)
    assert (made["year"], made["month"], made["day"]) == (1969, 5, 20)
    again = await gen.http.post(
        f"{API}/{source}/prior", json={"units": 3, "unit": "year"}, headers=as_user(user)
    )
    assert again.json()["target_year"] == 1966
    chain = (await gen.http.get(f"{API}/{source}/sequence", headers=SERVICE)).json()
    assert [item["id"] for item in chain["prior"]] == [earlier]
    second = await timepoint(gen, again.json()["target_id"])
    assert second["sequence_id"] == made["sequence_id"]
    assert await gen.moves(user) == [(-2, "temporal"), (-2, "temporal")]


async def test_every_error_comes_before_any_charge(gen: Gen) -> None:
    owner = await resolve(gen.http, "owner")
    other = await resolve(gen.http, "other")
    public = await seed_scene(gen, owner)
    private = await seed_scene(gen, owner, "private")
    processing = await seed_scene(gen, owner, status="processing")
    dayless = await seed_scene(gen, owner, day=None)
    gen.script.calls.clear()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (f"{uuid.uuid4()}/next", {}, 404, "timepoint_not_found"),
        (f"{private}/next", {}, 403, "timepoint_private"),
        (f"{processing}/prior", {}, 400, "source_not_completed"),
        (f"{dayless}/next", {"unit": "week"}, 400, "imprecise_source"),
        (f"{public}/next", {"units": 0}, 422, "validation_error"),
        (f"{public}/prior", {"units": 366}, 422, "validation_error"),
        (f"{public}/next", {"unit": "fortnight"}, 422, "validation_error"),
        (f"{private}/next/stream", {}, 403, "timepoint_private"),
        (f"{processing}/prior/stream", {}, 400, "source_not_completed"),
    ]
    for path, body, status, code in cases:
        response = await gen.http.post(f"{API}/{path}", json=body, headers=as_user(other))
        error = assert_error(response, status, code)
        if code == "timepoint_not_found":
            assert error["message"] == "Source timepoint not found"
        if code == "source_not_completed":
            assert error["message"] == "Source timepoint must be completed before navigation"
    assert gen.script.calls == []
    assert await gen.moves(other) == []
    # A month-precise source can still be stepped by months.
    stepped = await gen.http.post(
        f"{API}/{dayless}/next", json={"units": 1, "unit": "month"}, headers=as_user(other)
    )
    made = await timepoint(gen, stepped.json()["target_id"])
    assert (made["year"], made["month"], made["day"]) == (1969, 8, None)


async def test_without_a_provider_a_jump_is_503_and_free(make_gen: MakeGen) -> None:
    gen = await make_gen(provider=False)
    user = await resolve(gen.http, "grounded")
    source = await seed_scene(gen, user)
    assert_error(
        await gen.http.post(f"{API}/{source}/next", json={}, headers=as_user(user)),
        503,
        "no_llm_provider",
    )
    assert await gen.moves(user) == []


async def test_a_failed_new_scene_is_502_and_refunded(gen: Gen) -> None:
    user = await resolve(gen.http, "unlucky")
    source = await seed_scene(gen, user)
    gen.script.respond("JudgeVerdict", REJECTED)
    response = await gen.http.post(f"{API}/{source}/next", json={}, headers=as_user(user))
    body = assert_error(response, 502, "jump_failed")
    assert (await timepoint(gen, body["detail"]["target_id"]))["status"] == "failed"
    assert await gen.moves(user) == [(2, "refund"), (-2, "temporal")]


async def test_a_streamed_jump_follows_the_new_scene_and_is_charged(gen: Gen) -> None:
    user = await resolve(gen.http, "watcher")
    source = await seed_scene(gen, user)
    response = await gen.http.post(
        f"{API}/{source}/next/stream", json={"units": 10, "unit": "year"}, headers=as_user(user)
    )
    assert response.status_code == 200
    assert response.headers["x-accel-buffering"] == "no"
    events = frames(response.text)
    assert events[0]["event"] == "start"
    assert events[-1]["event"] == "done"
    done = events[-1]["data"]
    assert done["status"] == "completed"
    assert done["year"] == 1979
    assert any(event["step"] == "characters" for event in events)
    assert await gen.moves(user) == [(-2, "temporal")]


async def test_a_sequence_shows_only_what_the_caller_may_see(gen: Gen) -> None:
    owner = await resolve(gen.http, "chain-owner")
    other = await resolve(gen.http, "chain-viewer")
    first = await seed_scene(gen, owner)
    middle = await seed_scene(gen, owner, "private", parent_id=uuid.UUID(first))
    last = await seed_scene(gen, owner, parent_id=uuid.UUID(middle))
    mine = (await gen.http.get(f"{API}/{first}/sequence", headers=as_user(owner))).json()
    assert [item["id"] for item in mine["next"]] == [middle, last]
    limited = await gen.http.get(
        f"{API}/{first}/sequence", params={"limit": 1, "direction": "next"}, headers=as_user(owner)
    )
    assert [item["id"] for item in limited.json()["next"]] == [middle]
    theirs = (await gen.http.get(f"{API}/{first}/sequence", headers=as_user(other))).json()
    assert theirs["next"] == []
    upward = (await gen.http.get(f"{API}/{last}/sequence", headers=as_user(other))).json()
    assert upward["prior"] == []
    only_prior = await gen.http.get(
        f"{API}/{last}/sequence", params={"direction": "prior"}, headers=as_user(owner)
    )
    assert [item["id"] for item in only_prior.json()["prior"]] == [middle, first]
    assert only_prior.json()["next"] == []
    assert_error(
        await gen.http.get(f"{API}/{middle}/sequence", headers=as_user(other)),
        403,
        "timepoint_private",
    )
    assert_error(
        await gen.http.get(f"{API}/{uuid.uuid4()}/sequence", headers=SERVICE),
        404,
        "timepoint_not_found",
    )
    for limit in (0, 51):
        assert_error(
            await gen.http.get(f"{API}/{first}/sequence", params={"limit": limit}, headers=SERVICE),
            422,
            "validation_error",
        )
