"""The MCP server at /mcp/ through the `mcp` SDK's own Streamable HTTP client, against the
app under uvicorn, with the scripted LLM peer; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from conftest import make_settings
from llm_peer import LLMPeer
from scene_script import QUERY, script_scene
from support import as_user, resolve, serving, token_pair
from tollhouse.app import create_app

pytestmark = pytest.mark.anyio

CHAT_REPLY = {"response": "The dust is fine, like powder.", "emotional_tone": "calm"}


@pytest.fixture
async def base_url(database_url: str, tmp_path: Path, llm_peer: LLMPeer) -> AsyncIterator[str]:
    async with _served(database_url, tmp_path, llm_peer) as url:
        yield url


@asynccontextmanager
async def _served(database_url: str, tmp_path: Path, llm_peer: LLMPeer) -> AsyncIterator[str]:
    script_scene(llm_peer.script)
    settings = make_settings(
        database_url,
        tmp_path,
        llm_base_url=llm_peer.openai_base_url,
        llm_api_key="peer-key",
        llm_max_retries=0,
    )
    async with serving(create_app(settings)) as url:
        yield url


async def _bearer(base_url: str, external_id: str) -> tuple[str, dict[str, str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        user = await resolve(http, external_id)
        tokens = await token_pair(http, user)
    return user, {"Authorization": f"Bearer {tokens['access_token']}"}


async def _history(base_url: str, user: str) -> list[tuple[int, str]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.get("/api/v1/credits/history", headers=as_user(user))
    assert response.status_code == 200, response.text
    return [(row["amount"], row["type"]) for row in response.json()]


def _json(result: CallToolResult) -> dict[str, Any]:
    assert not result.isError, result.content
    content = result.content[0]
    assert isinstance(content, TextContent)
    body: dict[str, Any] = json.loads(content.text)
    return body


async def test_a_client_lists_generates_with_progress_reads_back_charged_once(
    base_url: str,
) -> None:
    user, headers = await _bearer(base_url, "mcp-user")
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        assert total == 100
        progress.append((value, message))

    async with (
        httpx.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{base_url}/mcp/", http_client=http) as (read, write, _),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        listed = await mcp.list_tools()
        assert [tool.name for tool in listed.tools] == [
            "tp_flash_generate",
            "tp_get_timepoint",
            "tp_list_my_timepoints",
            "tp_get_balance",
            "tp_chat_with_character",
            "tp_jump_in_time",
        ]
        generate = listed.tools[0]
        assert generate.inputSchema["required"] == ["query"]

        made = _json(
            await mcp.call_tool(
                "tp_flash_generate",
                {"query": QUERY, "visibility": "private"},
                progress_callback=on_progress,
            )
        )
        assert made["status"] == "completed", made
        assert made["owner_id"] == user
        assert made["year"] == 1969
        assert made["visibility"] == "private"
        assert made["status_url"] == f"{base_url}/api/v1/timepoints/{made['id']}"
        values = [value for value, _ in progress]
        assert (values[0], values[-1]) == (0, 100)
        assert values == sorted(values)  # never backwards
        assert progress[0][1] == "start: initialization"
        assert progress[-1][1] == "done: complete"
        assert any(message == "step_complete: characters" for _, message in progress)

        read_back = _json(await mcp.call_tool("tp_get_timepoint", {"timepoint_id": made["id"]}))
        assert read_back["id"] == made["id"]
        assert read_back["moment"]["narrative"]
        assert read_back["grounding"]["grounding_confidence"] == 0.95
        assert read_back["characters"]["characters"]

        mine = _json(await mcp.call_tool("tp_list_my_timepoints", {}))
        assert [item["id"] for item in mine["items"]] == [made["id"]]
        balance = _json(await mcp.call_tool("tp_get_balance", {}))
        assert balance["balance"] == 45

    # Charged once, through a hold captured on delivery.
    assert await _history(base_url, user) == [(-5, "generation"), (50, "signup_bonus")]


async def test_refusals_are_tool_errors_and_charge_nothing(base_url: str) -> None:
    user, headers = await _bearer(base_url, "mcp-refused")
    async with (
        httpx.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{base_url}/mcp/", http_client=http) as (read, write, _),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        cases = {
            "unknown_preset": {"query": QUERY, "preset": "ultra"},
            "validation_error": {"query": "ab"},
            "restricted_model": {
                "query": QUERY,
                "model_policy": "permissive",
                "text_model": "openai/gpt-4o",
            },
        }
        for code, arguments in cases.items():
            result = await mcp.call_tool("tp_flash_generate", arguments)
            assert result.isError
            content = result.content[0]
            assert isinstance(content, TextContent)
            # The SDK prefixes "Error executing tool …: "; then our error envelope.
            body = json.loads(content.text[content.text.index("{") :])
            assert (body["status"], body["error"]) == (422, code), body
        missing = await mcp.call_tool("tp_get_timepoint", {"timepoint_id": "not-an-id"})
        assert missing.isError
    assert await _history(base_url, user) == [(50, "signup_bonus")]


async def test_without_credentials_it_is_401_in_the_contracts_shape(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post("/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert response.status_code == 401
        assert response.json()["error"] == "Unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        bad = await http.post("/mcp/", json={}, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401


async def test_a_client_talks_to_a_character_and_jumps_in_time_each_paid_on_delivery(
    database_url: str, tmp_path: Path, llm_peer: LLMPeer
) -> None:
    async with _served(database_url, tmp_path, llm_peer) as base_url:
        user, headers = await _bearer(base_url, "mcp-traveller")
        progress: list[float] = []

        async def on_progress(value: float, _total: float | None, _message: str | None) -> None:
            progress.append(value)

        async with (
            httpx.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(f"{base_url}/mcp/", http_client=http) as (read, write, _),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            made = _json(await mcp.call_tool("tp_flash_generate", {"query": QUERY}))
            llm_peer.script.respond("CharacterReply", CHAT_REPLY)
            reply = _json(
                await mcp.call_tool(
                    "tp_chat_with_character",
                    {"timepoint_id": made["id"], "character": "neil armstrong", "message": "Hi"},
                )
            )
            assert (reply["character_name"], reply["response"]) == (
                "Neil Armstrong",
                CHAT_REPLY["response"],
            )
            again = _json(
                await mcp.call_tool(
                    "tp_chat_with_character",
                    {
                        "timepoint_id": made["id"],
                        "character": "Neil Armstrong",
                        "message": "And then?",
                        "session_id": reply["session_id"],
                    },
                )
            )
            assert again["session_id"] == reply["session_id"]
            unknown = await mcp.call_tool(
                "tp_chat_with_character",
                {"timepoint_id": made["id"], "character": "Nobody", "message": "Hi"},
            )
            assert unknown.isError

            later = _json(
                await mcp.call_tool(
                    "tp_jump_in_time",
                    {"timepoint_id": made["id"], "direction": "next", "units": 1, "unit": "day"},
                    progress_callback=on_progress,
                )
            )
            assert later["status"] == "completed", later
            assert later["source_id"] == made["id"]
            assert (later["year"], later["month"], later["day"]) == (1969, 7, 21)
            assert progress == sorted(progress)  # never backwards
            assert progress[-1] == 100
        # One scene, two chat turns, one jump; the failed chat cost nothing.
        assert await _history(base_url, user) == [
            (-2, "temporal"),
            (-1, "chat"),
            (-1, "chat"),
            (-5, "generation"),
            (50, "signup_bonus"),
        ]
