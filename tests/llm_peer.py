"""A local LLM: the OpenAI chat-completions protocol (OpenRouter, vLLM, ...) and Gemini's REST
API, on one server, answering the unmodified `openai` and `google-genai` SDKs from a script.

Its fixtures are registered for every test module by `pytest_plugins` in conftest.py:

    llm_peer.openai_base_url    # OPENROUTER_BASE_URL / LLM_BASE_URL ({url}/v1)
    gemini_peer.gemini_base_url # GOOGLE_API_BASE_URL
    llm_peer.script             # what they answer (llm_script.Script); the same object

It runs uvicorn in a daemon thread with its own event loop, so a test that blocks its own
loop does not stall the peer, and scripted latency (async sleeps) does not block other calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm_script import GATHER_SECONDS, Call, Script
from support import in_thread

_GEMINI_PATH = re.compile(r"models/(?P<model>[^/:]+):(?P<method>\w+)$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


def _tokens(text: str) -> int:
    return len(text.split())


def _as_text(value: Any) -> str:
    # A scripted str is sent as is (so a test can send broken JSON); anything else as JSON.
    if isinstance(value, str):
        return value
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    return json.dumps(value)


def _image(value: Any) -> tuple[bytes, str]:
    if isinstance(value, tuple):
        return value[0], value[1]
    return value, "image/png"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _error(status: int, retry_after: float | None, body: dict[str, Any]) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class LLMPeer:
    url: str = ""
    script: Script = field(default_factory=Script)
    # Calls held by `script.gather`, per name; set (in the peer's loop) when all have come.
    _gatherings: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def gemini_base_url(self) -> str:
        return self.url

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/{path:path}", self._gemini, methods=["POST"]),
            ]
        )

    async def _models(self, _request: Request) -> Response:
        return JSONResponse({"object": "list", "data": list(self.script.models)})

    async def _meet(self, call: Call) -> tuple[int, float | None] | None:
        failure = self.script.record(call)
        name = self.script.name_of(call)
        with self.script.flying(name):
            if self.script.gathered(name):
                self._gatherings.pop(name, asyncio.Event()).set()
            else:
                gathering = self._gatherings.setdefault(name, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gathering.wait(), GATHER_SECONDS)
            if self.script.latency:
                await asyncio.sleep(self.script.latency)
        return (failure.status, failure.retry_after) if failure else None

    # --- OpenAI chat completions ---------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        body = await request.json()
        messages = body.get("messages", [])
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        prompt = "\n".join(m["content"] for m in messages if m["role"] == "user")
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema")
        if body.get("stream"):
            kind = "stream"
        elif "image" in (body.get("modalities") or []):
            kind = "image"
        else:
            kind = "structured" if response_format.get("type") == "json_schema" else "text"
        schema_name = (response_format.get("json_schema") or {}).get("name")
        call = Call(kind, body.get("model", ""), schema_name, system, prompt, body, "openai")
        failed = await self._meet(call)
        if failed:
            status, retry_after = failed
            error = {"message": f"scripted {status}", "type": "scripted", "code": status}
            return _error(status, retry_after, {"error": error})
        value = self.script.answer(call, schema)
        created, model = int(time.time()), call.model
        if kind == "stream":
            return StreamingResponse(
                self._openai_chunks(_as_text(value), model, created),
                media_type="text/event-stream",
            )
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if kind == "image":
            data, content_type = _image(value)
            url = f"data:{content_type};base64,{base64.b64encode(data).decode()}"
            message["content"] = ""
            message["images"] = [{"type": "image_url", "image_url": {"url": url}}]
        else:
            message["content"] = _as_text(value)
        usage_in, usage_out = _tokens(system + " " + prompt), _tokens(message["content"]) + 1
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.script.calls)}",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": usage_in,
                    "completion_tokens": usage_out,
                    "total_tokens": usage_in + usage_out,
                },
            }
        )

    async def _openai_chunks(self, text: str, model: str, created: int) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            payload = {
                "id": "chatcmpl-stream",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
            return f"data: {json.dumps(payload)}\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        for piece in _pieces(text):
            yield chunk({"content": piece}, None)
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    # --- Gemini REST -----------------------------------------------------------------------

    async def _gemini(self, request: Request) -> Response:
        match = _GEMINI_PATH.search(request.url.path)
        if match is None:
            return JSONResponse({"error": {"code": 404, "message": "no such method"}}, 404)
        model, method = match["model"], match["method"]
        body = await request.json()
        call = self._gemini_call(model, method, body)
        failed = await self._meet(call)
        if failed:
            status, retry_after = failed
            error = {
                "code": status,
                "message": f"scripted {status}",
                "status": _STATUS_NAMES.get(status, "INTERNAL"),
            }
            return _error(status, retry_after, {"error": error})
        config = body.get("generationConfig") or {}
        value = self.script.answer(call, config.get("responseJsonSchema"))
        if call.kind == "image":
            data, content_type = _image(value)
            inline = {"mimeType": content_type, "data": base64.b64encode(data).decode()}
            return JSONResponse(self._gemini_reply(call, [{"inlineData": inline}], 1))
        text = _as_text(value)
        if call.kind == "stream":
            return StreamingResponse(
                self._gemini_chunks(call, text), media_type="text/event-stream"
            )
        return JSONResponse(self._gemini_reply(call, [{"text": text}], _tokens(text) + 1))

    @staticmethod
    def _gemini_call(model: str, method: str, body: dict[str, Any]) -> Call:
        def text_of(content: dict[str, Any] | None) -> str:
            return "".join(part.get("text", "") for part in (content or {}).get("parts", []))

        contents = body.get("contents") or []
        prompt = "\n".join(text_of(c) for c in contents if c.get("role", "user") == "user")
        system = text_of(body.get("systemInstruction"))
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema")
        if method == "streamGenerateContent":
            kind = "stream"
        elif "IMAGE" in (config.get("responseModalities") or []):
            kind = "image"
        else:
            kind = "structured" if schema is not None else "text"
        schema_name = schema.get("title") if isinstance(schema, dict) else None
        return Call(kind, model, schema_name, system, prompt, body, "gemini")

    @staticmethod
    def _gemini_reply(call: Call, parts: list[dict[str, Any]], output: int) -> dict[str, Any]:
        prompt = _tokens(call.system + " " + call.prompt)
        return {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": output,
                "totalTokenCount": prompt + output,
            },
            "modelVersion": call.model,
        }

    async def _gemini_chunks(self, call: Call, text: str) -> AsyncIterator[str]:
        for piece in _pieces(text):
            reply = self._gemini_reply(call, [{"text": piece}], 1)
            yield f"data: {json.dumps(reply)}\r\n\r\n"


@pytest.fixture(scope="session")
def llm_peer_server() -> Iterator[LLMPeer]:
    peer = LLMPeer()
    with in_thread(peer.app(), "the local LLM peer") as url:
        peer.url = url
        yield peer


@pytest.fixture
def llm_peer(llm_peer_server: LLMPeer) -> LLMPeer:
    """The session's local LLM (OpenAI protocol at `openai_base_url`), script reset."""
    llm_peer_server.script.reset()
    return llm_peer_server


@pytest.fixture
def gemini_peer(llm_peer_server: LLMPeer) -> LLMPeer:
    """The same peer, for its Gemini API at `gemini_base_url` (the script is shared)."""
    llm_peer_server.script.reset()
    return llm_peer_server
