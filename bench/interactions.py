"""Character chat: what Tollhouse adds to the LLM's own latency, under load and per turn.

1. Time to first token: --chats streamed `POST /interactions/{id}/chat/stream`, one after
   another, each read to its `done` frame; the time from sending the POST to the first
   `token` frame, against the LLM peer's own first token (the same chat completion streamed
   straight from the peer), measured just before each chat. Target: p50 of the difference
   <= 50 ms.
2. --concurrent streamed chats opened at once, each by its own user (metered, charged a
   credit each), read to `done`: errors (non-200, no `done`, an `error` frame). Target 0.
3. Server CPU per chat turn: --chats sequential `POST /chat` (structured replies), the
   Tollhouse process's CPU seconds divided by the turns (reported).

Run `.venv/bin/python bench/interactions.py` (flags: --latency, --chats, --concurrent,
--markdown). The LLM peer and `tollhouse serve --workers 1` on SQLite are bench/pipeline.py's;
one scene is generated first (system caller) and every chat talks to its characters. Exit
status 0 all targets pass, 1 one fails, 2 no run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

import auth
import pipeline

INTERACTIONS = "/api/v1/interactions"
CHARACTER = "Neil Armstrong"  # tests/scene_script.py's first character
MESSAGE = "What do you see out of the window?"
TARGET_OVERHEAD_P50_MS = 50.0
HEADERS = ["measure", "result", "baseline (same run)", "target", "verdict"]


@dataclass(slots=True)
class Bench:
    client: httpx.AsyncClient
    server: auth.Server
    peer: pipeline.Process
    timepoint_id: str = ""

    def user(self, user_id: str) -> dict[str, str]:
        return {"X-Service-Key": self.server.service_key, "X-User-ID": user_id}

    async def resolve(self, external_id: str) -> str:
        response = await self.client.post(
            "/api/v1/users/resolve",
            json={"external_id": external_id},
            headers={"X-Service-Key": self.server.service_key},
        )
        if response.status_code != 200:
            raise auth.BenchError(f"resolve answered {response.status_code}: {response.text}")
        return str(response.json()["user_id"])


async def make_scene(bench: Bench) -> None:
    response = await bench.client.post(
        f"{pipeline.GENERATE}/sync",
        json=pipeline.request_body(),
        headers={"X-Service-Key": bench.server.service_key},
    )
    if response.status_code != 200 or response.json().get("status") != "completed":
        raise auth.BenchError(f"the scene failed: {response.status_code} {response.text[:300]}")
    bench.timepoint_id = response.json()["id"]


async def peer_first_token(bench: Bench) -> float:
    """Seconds to the first content chunk of a chat completion streamed from the peer."""
    body = {
        "model": "google/gemini-2.5-flash",
        "stream": True,
        "messages": [{"role": "user", "content": MESSAGE}],
    }
    started = time.perf_counter()
    async with bench.client.stream(
        "POST", f"{bench.peer.base_url}/v1/chat/completions", json=body
    ) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    return time.perf_counter() - started
    raise auth.BenchError("the peer's stream sent no content")


@dataclass(slots=True)
class Chat:
    first_token: float | None = None
    wall: float = math.nan
    error: str | None = None


async def stream_chat(bench: Bench, user_id: str) -> Chat:
    chat = Chat()
    started = time.perf_counter()
    body = {"character": CHARACTER, "message": MESSAGE}
    url = f"{INTERACTIONS}/{bench.timepoint_id}/chat/stream"
    try:
        async with bench.client.stream("POST", url, json=body, headers=bench.user(user_id)) as r:
            if r.status_code != 200:
                chat.error = f"{r.status_code} {(await r.aread())[:300].decode(errors='replace')}"
                return chat
            last: dict[str, Any] | None = None
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                last = json.loads(line[6:])
                if last["event"] == "token" and chat.first_token is None:
                    chat.first_token = time.perf_counter() - started
    except (httpx.HTTPError, OSError, ValueError) as exc:
        chat.error = f"{type(exc).__name__}: {exc}"
        return chat
    chat.wall = time.perf_counter() - started
    if last is None or last["event"] != "done":
        chat.error = f"ended with {last}"
    return chat


@dataclass(slots=True)
class Measurements:
    chats: list[Chat] = field(default_factory=list)
    peer: list[float] = field(default_factory=list)
    burst: list[Chat] = field(default_factory=list)
    burst_wall: float = math.nan
    cpu_per_turn: float = math.nan
    turn_errors: list[str] = field(default_factory=list)


async def measure(bench: Bench, args: argparse.Namespace, status: Console) -> Measurements:
    m = Measurements()
    with status.status("a scene to talk to") as spinner:
        await make_scene(bench)
        talker = await bench.resolve("bench-talker")
        await stream_chat(bench, talker)  # warm-up, not counted
        spinner.update(f"{args.chats} streamed chats, one at a time")
        for _ in range(args.chats):
            m.peer.append(await peer_first_token(bench))
            m.chats.append(await stream_chat(bench, talker))
        spinner.update(f"{args.chats} chat turns for the CPU")
        turner = await bench.resolve("bench-turner")
        url = f"{INTERACTIONS}/{bench.timepoint_id}/chat"
        cpu_before = auth._server_cpu_seconds(bench.server.pid)
        for _ in range(args.chats):
            response = await bench.client.post(
                url, json={"character": CHARACTER, "message": MESSAGE}, headers=bench.user(turner)
            )
            if response.status_code != 200:
                m.turn_errors.append(f"{response.status_code} {response.text[:200]}")
        cpu_after = auth._server_cpu_seconds(bench.server.pid)
        if cpu_before is not None and cpu_after is not None:
            m.cpu_per_turn = (cpu_after - cpu_before) / args.chats
        spinner.update(f"{args.concurrent} concurrent streamed chats")
        users = [await bench.resolve(f"bench-crowd-{n}") for n in range(args.concurrent)]
        started = time.perf_counter()
        m.burst = list(await asyncio.gather(*(stream_chat(bench, user) for user in users)))
        m.burst_wall = time.perf_counter() - started
    return m


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(m: Measurements, args: argparse.Namespace) -> tuple[list[list[str]], list[str], bool]:
    ours = sorted(c.first_token for c in m.chats if c.first_token is not None)
    peer = sorted(m.peer)
    overheads = sorted(
        c.first_token - p for c, p in zip(m.chats, m.peer, strict=True) if c.first_token
    )
    errors = [c.error for c in m.chats if c.error] + m.turn_errors
    overhead_p50 = auth._percentile_ms(overheads, 0.5)
    ok_overhead = overhead_p50 <= TARGET_OVERHEAD_P50_MS and not errors
    burst_errors = [c.error for c in m.burst if c.error]
    burst_first = sorted(c.first_token for c in m.burst if c.first_token is not None)
    rows = [
        [
            f"streamed chat, first token, p50 of {len(ours)}",
            f"{auth._percentile_ms(ours, 0.5):.1f} ms (+{overhead_p50:.1f} ms over the LLM)",
            f"the LLM peer's own first token p50 {auth._percentile_ms(peer, 0.5):.1f} ms",
            f"<= +{TARGET_OVERHEAD_P50_MS:g} ms",
            _verdict(ok_overhead) + (f" ({len(errors)} errors)" if errors else ""),
        ],
        [
            f"streamed chat, first token, p99 of {len(ours)}",
            f"{auth._percentile_ms(ours, 0.99):.1f} ms "
            f"(+{auth._percentile_ms(overheads, 0.99):.1f} ms)",
            f"peer p99 {auth._percentile_ms(peer, 0.99):.1f} ms",
            "reported",
            "",
        ],
        [
            f"{args.concurrent} concurrent streamed chats: errors",
            f"{len(burst_errors)} of {len(m.burst)}",
            "",
            "0",
            _verdict(not burst_errors),
        ],
        [
            f"{args.concurrent} concurrent streamed chats: first token",
            f"p50 {auth._percentile_ms(burst_first, 0.5):,.0f} ms, "
            f"p99 {auth._percentile_ms(burst_first, 0.99):,.0f} ms; all done in "
            f"{m.burst_wall:.2f} s",
            f"one at a time: p50 {auth._percentile_ms(ours, 0.5):.1f} ms",
            "reported",
            "",
        ],
        [
            f"server CPU per chat turn ({args.chats} sequential `POST /chat`)",
            f"{m.cpu_per_turn * 1000:.1f} ms",
            f"LLM latency {args.latency:g} s per call",
            "reported",
            "",
        ],
    ]
    lines = [
        f"chats: `POST {INTERACTIONS}/{{id}}/chat[/stream]` to {CHARACTER} by metered users "
        "(X-Service-Key + X-User-ID, 1 credit each, held and captured); the scene is one "
        "balanced-preset generation by a system caller",
        f"LLM: tests/llm_peer.py in its own uvicorn process, {args.latency:g} s async sleep per "
        "call; Tollhouse: `tollhouse serve --workers 1`, SQLite, LOG_LEVEL=WARNING",
        "first token: each chat read to `done` before the next; its baseline is the same "
        "completion streamed straight from the peer just before",
    ]
    for name, errs in (("chats", errors), ("concurrent chats", burst_errors)):
        if errs:
            lines.append(f"ERRORS in {name}: {len(errs)}, first: {errs[0]}")
    return rows, lines, ok_overhead and not burst_errors


def run(args: argparse.Namespace, out: Console) -> bool:
    status = Console(stderr=True)
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-bench-")))
        peer = stack.enter_context(pipeline.llm_peer(data_dir, args.latency))
        server = stack.enter_context(pipeline.tollhouse_server(data_dir, peer.base_url))
        limits = httpx.Limits(max_connections=args.concurrent + 8)
        timeout = httpx.Timeout(30.0, read=300.0)

        async def measured() -> Measurements:
            async with httpx.AsyncClient(
                base_url=server.base_url, limits=limits, timeout=timeout
            ) as client:
                return await measure(Bench(client, server, peer), args, status)

        with asyncio.Runner(loop_factory=auth._event_loop_factory()) as runner:
            m = runner.run(measured())
    rows, lines, passed = report(m, args)
    if args.markdown:
        table = ["| " + " | ".join(HEADERS) + " |", "| --- | ---: | --- | --- | --- |"]
        table += ["| " + " | ".join(row) + " |" for row in rows]
        text = "\n".join([*table, "", *(f"- {line}" for line in lines)])
        out.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        rendered = Table(*HEADERS, title="Character chat", caption="\n".join(lines))
        for row in rows:
            rendered.add_row(*row, style="bold red" if row[-1].startswith("FAIL") else None)
        out.print(rendered)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1, help="LLM seconds per call")
    parser.add_argument("--chats", type=int, default=20, help="sequential chats")
    parser.add_argument("--concurrent", type=int, default=50, help="chats opened at once")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table for RESULTS.md")
    parser.add_argument(
        "--startup-seconds",
        type=float,
        default=120.0,
        help="how long the peer and the server may take to start (a fresh SQLite is migrated "
        "at start-up, which takes more than bench/auth.py's 30 s on a busy 2-core machine)",
    )
    args = parser.parse_args(argv)
    auth.STARTUP_TIMEOUT_SECONDS = args.startup_seconds
    if args.latency <= 0 or min(args.chats, args.concurrent) < 1:
        parser.error("--latency must be > 0; --chats, --concurrent >= 1")
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    sys.exit(main())
