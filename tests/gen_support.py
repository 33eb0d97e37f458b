"""Tollhouse under uvicorn with the scripted LLM peer as its provider: the `make_gen` and
`gen` fixtures (a pytest plugin, see conftest.py) shared by the generation, interaction and
temporal tests, and `frames` to read an SSE body."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import make_settings
from llm_peer import LLMPeer
from llm_script import Script
from scene_script import CAST, QUERY, bio, script_scene, scripted
from support import ADMIN_KEY, as_user, serving
from tollhouse.app import create_app
from tollhouse.generation.service import new_timepoint
from tollhouse.identity.caller import Caller, CallerKind

GENERATE = "/api/v1/timepoints/generate"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
# The judge's verdict on a query that is no moment in time: the run fails.
REJECTED = {
    "query_type": "invalid",
    "is_valid": False,
    "cleaned_query": "asdf",
    "confidence": 0.9,
    "reason": "not a moment in time",
    "suggested_query": None,
    "detected_year": None,
    "detected_location": None,
    "detected_figures": [],
    "unsafe": False,
}


@dataclass
class Gen:
    http: httpx.AsyncClient
    app: FastAPI
    script: Script

    async def finished(self, timepoint_id: str) -> dict[str, Any]:
        """Wait for the run, then the timepoint as its owner-agnostic admin sees it."""
        await self.app.state.generation.wait(uuid.UUID(timepoint_id))
        response = await self.http.get(
            f"/api/v1/timepoints/{timepoint_id}", params={"full": "true"}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def sync(self, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """A sync generation that must answer 200: the timepoint."""
        response = await self.http.post(GENERATE + "/sync", json=body, headers=headers)
        assert response.status_code == 200, response.text
        timepoint: dict[str, Any] = response.json()
        return timepoint

    async def moves(self, user: str) -> list[tuple[int, str]]:
        """The user's ledger rows after the sign-up grant, newest first: (amount, type)."""
        response = await self.http.get("/api/v1/credits/history", headers=as_user(user))
        assert response.status_code == 200, response.text
        return [(r["amount"], r["type"]) for r in response.json() if r["type"] != "signup_bonus"]

    async def balance(self, user: str) -> int:
        response = await self.http.get("/api/v1/credits/balance", headers=as_user(user))
        assert response.status_code == 200, response.text
        return int(response.json()["balance"])


MakeGen = Callable[..., Awaitable[Gen]]


@pytest.fixture
async def make_gen(database_url: str, tmp_path: Path, llm_peer: LLMPeer) -> AsyncIterator[MakeGen]:
    stack: list[tuple[Any, httpx.AsyncClient]] = []

    async def factory(*, provider: bool = True, **overrides: Any) -> Gen:
        values: dict[str, Any] = {"llm_max_retries": 0, "llm_retry_backoff_seconds": 0}
        if provider:
            values |= {"llm_base_url": llm_peer.openai_base_url, "llm_api_key": "peer-key"}
        app = create_app(make_settings(database_url, tmp_path, **(values | overrides)))
        server = serving(app)
        url = await server.__aenter__()
        http = httpx.AsyncClient(base_url=url, timeout=30)
        stack.append((server, http))
        return Gen(http, app, llm_peer.script)

    yield factory
    for server, http in reversed(stack):
        await http.aclose()
        await server.__aexit__(None, None, None)


@pytest.fixture
async def gen(make_gen: MakeGen, llm_peer: LLMPeer) -> Gen:
    script_scene(llm_peer.script)
    return await make_gen()


def frames(text: str) -> list[dict[str, Any]]:
    """The `data:` frames of an SSE body (keep-alive comments skipped)."""
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            out.append(json.loads(block.removeprefix("data: ")))
    return out


async def seed_scene(
    gen: Gen,
    owner: str | None,
    visibility: str = "public",
    *,
    characters: int = 3,
    **fields: Any,
) -> str:
    """A completed Apollo 11 timepoint written straight into the database (as a run of
    `script_scene` would save it), for tests about what comes after generation."""
    timeline = scripted("Timeline")
    values: dict[str, Any] = {
        key: timeline[key] for key in ("year", "month", "day", "season", "time_of_day", "era")
    }
    values["location"] = timeline["location"]
    timepoint_id = uuid.uuid4()
    payload = {
        "query": QUERY,
        **values,
        "scene_data": scripted("SceneSetting"),
        "character_data": {"characters": [bio(person) for person in CAST[:characters]]},
        "dialog": scripted("DialogScript")["lines"][:3],
        "moment_data": scripted("DramaticMoment"),
    }
    domain = gen.app.state.generation
    async with domain.database.session() as session:
        user = uuid.UUID(owner) if owner else None
        caller = Caller(CallerKind.SYSTEM, gen.app.state.identity.home_project_id)
        row = new_timepoint(
            caller, timepoint_id, QUERY, "balanced", visibility="public", generate_image=False
        )
        row.user_id, row.visibility, row.status, row.tdf_payload = (
            user,
            visibility,
            "completed",
            payload,
        )
        for name, value in (values | fields).items():
            setattr(row, name, value)
        session.add(row)
    return str(timepoint_id)
