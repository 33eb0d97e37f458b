"""Scene generation end to end: Tollhouse's run of the scene graph against a scripted LLM.

1. Wall time vs critical path: --runs sequential `POST /generate/sync` (balanced preset,
   role-play dialog, no image); the median client-measured wall time divided by the graph's
   critical path, `scene_graph().longest_path(sequential_calls) * --latency` with the image
   steps (which do not run without an image) weighted 0. Target <= 1.15x.
2. Time to the first SSE frame of `POST /generate/stream` (the `start` frame), --streams
   times one after another, each read to its end; against the time to the first byte of
   `GET /health` from the same client, measured just before each stream. Target p50 <= 50 ms.
3. --concurrent streams opened at once, each read to its terminal frame: errors (non-200, no
   `done`, `status != completed`; target 0), wall time, and the Tollhouse process's peak RSS
   (/proc VmRSS every 50 ms) against its idle RSS just before.

Run `.venv/bin/python bench/pipeline.py` (flags: --latency, --runs, --streams, --concurrent,
--markdown). The LLM is tests/llm_peer.py's peer with tests/scene_script.py's answers and
`script.latency = --latency` (an async sleep per call), under uvicorn in its own process
(`peer_app` below); Tollhouse is `tollhouse serve --workers 1` on SQLite in a temp dir, as in
bench/auth.py. One warm-up generation runs first and is not counted. Exit status 0 all
targets pass, 1 one fails, 2 no run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import auth
from tollhouse.generation.pipeline import Step
from tollhouse.generation.scene import scene_graph, sequential_calls

TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"
LATENCY_ENV = "BENCH_LLM_LATENCY"
CALLS_PATH = "/calls"
GENERATE = "/api/v1/timepoints/generate"
PRESET = "balanced"
QUERY = "Apollo 11 landing, July 1969"  # tests/scene_script.py's QUERY
# Steps that only run when the request asks for an image (`when=_wants_image`).
IMAGE_STEPS = frozenset({"image_prompt_optimize", "image_generation"})
TERMINAL_EVENTS = frozenset({"done", "error"})
RSS_INTERVAL_SECONDS = 0.05
TARGET_PATH_RATIO = 1.15
TARGET_FIRST_FRAME_P50_MS = 50.0


# --- the scripted LLM (runs in its own process) -----------------------------------------------


def peer_app() -> Starlette:
    """`uvicorn --factory pipeline:peer_app`: the tests' LLM peer answering a whole scene.

    GET /calls says how many LLM calls it has answered, so the bench can count them per run.
    """
    sys.path.insert(0, str(TESTS_DIR))
    from llm_peer import LLMPeer
    from scene_script import script_scene

    peer = LLMPeer()
    script_scene(peer.script)
    peer.script.latency = float(os.environ[LATENCY_ENV])
    app: Starlette = peer.app()

    async def calls(_request: Request) -> JSONResponse:
        return JSONResponse({"calls": len(peer.script.calls)})

    app.router.routes.insert(0, Route(CALLS_PATH, calls))
    return app


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + auth.STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise auth.BenchError(f"{what} exited with {process.returncode}:\n{auth._tail(log)}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.1)
    raise auth.BenchError(f"{what} did not start:\n{auth._tail(log)}")


@dataclass(frozen=True, slots=True)
class Process:
    base_url: str
    pid: int


@contextmanager
def llm_peer(data_dir: Path, latency: float) -> Iterator[Process]:
    port = auth._free_port()
    log_path = data_dir / "llm-peer.log"
    command = [
        sys.executable, "-m", "uvicorn", "pipeline:peer_app", "--factory",
        "--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, LATENCY_ENV: repr(latency)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=data_dir, stdout=log, stderr=log, env=env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_for(base_url + CALLS_PATH, process, log_path, "the LLM peer")
            yield Process(base_url, process.pid)
        finally:
            auth._stop(process)


@contextmanager
def tollhouse_server(data_dir: Path, llm_url: str) -> Iterator[auth.Server]:
    """bench/auth.py's `tollhouse serve --workers 1` on SQLite, with the peer as its LLM."""
    port = auth._free_port()
    service_key = secrets.token_urlsafe(30)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TOLLHOUSE_DATA_DIR": str(data_dir),
        "TOLLHOUSE_ENV": "development",
        "FLASH_SERVICE_KEY": service_key,
        "LLM_BASE_URL": f"{llm_url}/v1",
        "LLM_API_KEY": "x",
        "LLM_MAX_RETRIES": "0",
        # The provider's token bucket (600/min by default) would pace 100 concurrent scenes
        # (~2,000 calls) at 10 calls/s; the local peer has no quota to protect.
        "LLM_REQUESTS_PER_MINUTE": os.environ.get("LLM_REQUESTS_PER_MINUTE", "0"),
        "LOG_LEVEL": "WARNING",
    }
    command = [str(auth._tollhouse_executable()), "serve", "--host", "127.0.0.1"]
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "1"],
            env=env,
            cwd=data_dir,  # so no stray .env from the checkout is read
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_for(base_url + auth.HEALTH_PATH, process, log_path, "the server")
            yield auth.Server(base_url, process.pid, service_key, "")
        finally:
            auth._stop(process)


def request_body() -> dict[str, str]:
    return {"query": QUERY, "preset": PRESET}


# --- the critical path ------------------------------------------------------------------------


def _calls_without_image(step: Step[Any]) -> float:
    return 0.0 if step.name in IMAGE_STEPS else sequential_calls(step)


@dataclass(frozen=True, slots=True)
class CriticalPath:
    calls: float  # LLM round trips on the path for the request made
    calls_as_declared: float  # with SEQUENTIAL_CALLS as is (image steps counted)
    latency: float

    @property
    def seconds(self) -> float:
        return self.calls * self.latency


def critical_path(latency: float) -> CriticalPath:
    graph = scene_graph()
    return CriticalPath(
        graph.longest_path(_calls_without_image), graph.longest_path(sequential_calls), latency
    )


# --- measuring --------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Peak VmRSS of a process, sampled every 50 ms on a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.peak_kib = _rss_kib(pid) or 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_SECONDS):
            self.peak_kib = max(self.peak_kib, _rss_kib(self._pid) or 0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, _rss_kib(self._pid) or 0)


@dataclass(slots=True)
class Bench:
    client: httpx.AsyncClient
    server: auth.Server
    peer: Process

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Service-Key": self.server.service_key}

    @property
    def body(self) -> dict[str, str]:
        return request_body()

    async def peer_calls(self) -> int:
        response = await self.client.get(self.peer.base_url + CALLS_PATH)
        return int(response.json()["calls"])


@dataclass(slots=True)
class SyncResult:
    walls: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # CPU seconds per generation
    errors: list[str] = field(default_factory=list)


async def _sync_once(bench: Bench) -> tuple[float, str | None]:
    started = time.perf_counter()
    response = await bench.client.post(f"{GENERATE}/sync", json=bench.body, headers=bench.headers)
    wall = time.perf_counter() - started
    if response.status_code != 200:
        return wall, f"{response.status_code} {response.text[:300]}"
    status = response.json().get("status")
    return wall, None if status == "completed" else f"status {status}"


async def measure_sync(bench: Bench, runs: int) -> SyncResult:
    result = SyncResult()
    for _ in range(runs):
        calls_before = await bench.peer_calls()
        cpu_before = auth._server_cpu_seconds(bench.server.pid)
        wall, error = await _sync_once(bench)
        cpu_after = auth._server_cpu_seconds(bench.server.pid)
        result.calls.append(await bench.peer_calls() - calls_before)
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu.append(cpu_after - cpu_before)
        if error is None:
            result.walls.append(wall)
        else:
            result.errors.append(error)
    return result


@dataclass(slots=True)
class StreamResult:
    first_frame: float | None = None  # seconds from sending the POST
    first_event: str | None = None
    wall: float = math.nan
    frames: int = 0
    step_errors: int = 0
    error: str | None = None


async def read_stream(bench: Bench) -> StreamResult:
    """One `POST /generate/stream`, read to its terminal frame."""
    result = StreamResult()
    started = time.perf_counter()
    try:
        async with bench.client.stream(
            "POST", f"{GENERATE}/stream", json=bench.body, headers=bench.headers
        ) as response:
            if response.status_code != 200:
                body = (await response.aread())[:300].decode(errors="replace")
                result.error = f"{response.status_code} {body}"
                return result
            terminal: dict[str, Any] | None = None
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators and keep-alive comments
                if result.first_frame is None:
                    result.first_frame = time.perf_counter() - started
                event = json.loads(line[5:])
                result.frames += 1
                result.first_event = result.first_event or event["event"]
                result.step_errors += event["event"] == "step_error"
                if event["event"] in TERMINAL_EVENTS:
                    terminal = event
                    break
    except (httpx.HTTPError, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.wall = time.perf_counter() - started
    if terminal is None:
        result.error = "the stream ended without a terminal frame"
    elif terminal["event"] != "done":
        result.error = f"{terminal['event']} frame: {terminal.get('error')}"
    elif (terminal.get("data") or {}).get("status") != "completed":
        result.error = f"done with status {terminal['data'].get('status')}: {terminal['error']}"
    return result


async def health_first_byte(bench: Bench) -> float:
    started = time.perf_counter()
    elapsed = math.nan
    async with bench.client.stream("GET", auth.HEALTH_PATH) as response:
        async for _chunk in response.aiter_raw():
            if math.isnan(elapsed):
                elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise auth.BenchError(f"GET {auth.HEALTH_PATH} answered {response.status_code}")
    return elapsed


@dataclass(slots=True)
class FirstFrames:
    streams: list[StreamResult] = field(default_factory=list)
    health: list[float] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.streams if s.error is not None]

    def first_frames(self) -> list[float]:
        return sorted(s.first_frame for s in self.streams if s.first_frame is not None)


async def measure_first_frames(bench: Bench, streams: int) -> FirstFrames:
    result = FirstFrames()
    for _ in range(streams):
        result.health.append(await health_first_byte(bench))
        result.streams.append(await read_stream(bench))
    result.health.sort()
    return result


@dataclass(slots=True)
class Burst:
    streams: list[StreamResult]
    wall: float
    idle_rss_kib: int
    peak_rss_kib: int
    # Shares of one core during the burst: Tollhouse, the LLM peer, this client.
    server_cpu: float | None
    peer_cpu: float | None
    client_cpu: float

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.streams if s.error is not None]


async def measure_burst(bench: Bench, concurrent: int) -> Burst:
    pid = bench.server.pid
    await asyncio.sleep(0.5)  # let the previous phase's last writes settle
    idle = _rss_kib(pid) or 0
    before = [auth._server_cpu_seconds(p) for p in (pid, bench.peer.pid)]
    client_before = time.process_time()
    with RssSampler(pid) as rss:
        started = time.perf_counter()
        streams = await asyncio.gather(*(read_stream(bench) for _ in range(concurrent)))
        wall = time.perf_counter() - started
    client = (time.process_time() - client_before) / wall
    after = [auth._server_cpu_seconds(p) for p in (pid, bench.peer.pid)]
    server_cpu, peer_cpu = (
        None if b is None or a is None else (a - b) / wall
        for b, a in zip(before, after, strict=True)
    )
    return Burst(list(streams), wall, idle, rss.peak_kib, server_cpu, peer_cpu, client)


@dataclass(slots=True)
class Measurements:
    path: CriticalPath
    warmup_wall: float
    sync: SyncResult
    first: FirstFrames
    burst: Burst


async def measure(
    server: auth.Server, peer: Process, args: argparse.Namespace, status: Console
) -> Measurements:
    limits = httpx.Limits(max_connections=args.concurrent + 8, max_keepalive_connections=16)
    timeout = httpx.Timeout(30.0, read=600.0)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=timeout) as c:
        bench = Bench(c, server, peer)
        with status.status("warm-up generation") as spinner:
            warmup_wall, error = await _sync_once(bench)
            if error is not None:
                raise auth.BenchError(f"the warm-up generation failed: {error}")
            spinner.update(f"{args.runs} sync generations")
            sync = await measure_sync(bench, args.runs)
            spinner.update(f"{args.streams} streams, one at a time")
            first = await measure_first_frames(bench, args.streams)
            spinner.update(f"{args.concurrent} concurrent streams")
            burst = await measure_burst(bench, args.concurrent)
    return Measurements(critical_path(args.latency), warmup_wall, sync, first, burst)


# --- report -----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ms(sorted_seconds: list[float], quantile: float) -> float:
    return auth._percentile_ms(sorted_seconds, quantile)


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


HEADERS = ["measure", "result", "baseline (same run)", "target", "verdict"]


@dataclass(frozen=True, slots=True)
class Report:
    rows: list[list[str]]
    lines: list[str]
    passed: bool


def report(m: Measurements, args: argparse.Namespace) -> Report:
    path, sync, first, burst = m.path, m.sync, m.first, m.burst
    median = statistics.median(sync.walls) if sync.walls else math.nan
    ratio = median / path.seconds if path.seconds else math.nan
    calls = statistics.median(sync.calls) if sync.calls else math.nan
    ok_ratio = ratio <= TARGET_PATH_RATIO and not sync.errors
    frames = first.first_frames()
    p50, p99 = _ms(frames, 0.50), _ms(frames, 0.99)
    ok_first = p50 <= TARGET_FIRST_FRAME_P50_MS and not first.errors
    not_start = sum(s.first_event != "start" for s in first.streams if s.error is None)
    ok_burst = not burst.errors
    burst_walls = sorted(s.wall for s in burst.streams if s.error is None)
    burst_first = sorted(s.first_frame for s in burst.streams if s.first_frame is not None)
    cpu_per_gen = statistics.median(sync.server_cpu) if sync.server_cpu else math.nan
    rows = [
        [
            f"sync generation wall time, median of {len(sync.walls)}",
            f"{median:.3f} s = {ratio:.3f}x the path "
            f"(min {min(sync.walls, default=math.nan):.3f}, "
            f"max {max(sync.walls, default=math.nan):.3f})",
            f"critical path {path.calls:g} calls x {path.latency:g} s = {path.seconds:.2f} s; "
            f"the peer answered {calls:g} calls per generation",
            f"<= {TARGET_PATH_RATIO}x",
            _verdict(ok_ratio) + (f" ({len(sync.errors)} errors)" if sync.errors else ""),
        ],
        [
            f"first SSE frame, p50 of {len(frames)} streams",
            f"{p50:.1f} ms",
            f"GET /health first byte p50 {_ms(first.health, 0.5):.1f} ms",
            f"<= {TARGET_FIRST_FRAME_P50_MS:g} ms",
            _verdict(ok_first) + (f" ({len(first.errors)} errors)" if first.errors else ""),
        ],
        [
            f"first SSE frame, p99 of {len(frames)} streams",
            f"{p99:.1f} ms",
            f"GET /health first byte p99 {_ms(first.health, 0.99):.1f} ms",
            "reported",
            "",
        ],
        [
            f"{args.concurrent} concurrent streams: errors",
            f"{len(burst.errors)} of {len(burst.streams)}",
            "",
            "0",
            _verdict(ok_burst),
        ],
        [
            f"{args.concurrent} concurrent streams: wall time",
            f"{burst.wall:.2f} s (per stream p50 {_ms(burst_walls, 0.5) / 1000:.2f} s, "
            f"p99 {_ms(burst_walls, 0.99) / 1000:.2f} s, "
            f"max {max(burst_walls, default=math.nan):.2f} s)",
            f"critical path {path.seconds:.2f} s; one sync run {median:.2f} s",
            "reported",
            "",
        ],
        [
            f"{args.concurrent} concurrent streams: first SSE frame",
            f"p50 {_ms(burst_first, 0.5):,.0f} ms, p99 {_ms(burst_first, 0.99):,.0f} ms",
            f"one stream at a time: p50 {p50:.1f} ms",
            "reported",
            "",
        ],
        [
            f"{args.concurrent} concurrent streams: Tollhouse peak RSS",
            f"{_mib(burst.peak_rss_kib)} (+{_mib(burst.peak_rss_kib - burst.idle_rss_kib)})",
            f"idle {_mib(burst.idle_rss_kib)}",
            "reported",
            "",
        ],
    ]
    cpu_burst = ", ".join(
        f"{name} {'n/a' if share is None else f'{share:.0%}'}"
        for name, share in (
            ("Tollhouse", burst.server_cpu),
            ("LLM peer", burst.peer_cpu),
            ("bench client", burst.client_cpu),
        )
    )
    lines = [
        f"request: POST {GENERATE}/sync|stream {json.dumps(request_body())} with X-Service-Key "
        "(system caller, unmetered); balanced preset = role-play dialog, parallelism 3, no image",
        f"critical path: scene_graph().longest_path(sequential_calls) with "
        f"{', '.join(sorted(IMAGE_STEPS))} weighted 0 (they are skipped without an image): "
        f"{path.calls:g} calls; as SEQUENTIAL_CALLS declares them: {path.calls_as_declared:g}",
        f"LLM: tests/llm_peer.py + scene_script in its own uvicorn process, "
        f"{path.latency:g} s async sleep per call; Tollhouse: `tollhouse serve --workers 1`, "
        "SQLite, LOG_LEVEL=WARNING, LLM_MAX_RETRIES=0, "
        f"LLM_REQUESTS_PER_MINUTE={os.environ.get('LLM_REQUESTS_PER_MINUTE', '0')}",
        f"warm-up generation (not counted): {m.warmup_wall:.3f} s; Tollhouse CPU per sync "
        f"generation: {cpu_per_gen * 1000:.0f} ms (median); CPU during the burst (share of one "
        f"core; {os.cpu_count()} cores): {cpu_burst}",
        f"first frames: each stream read to its end before the next; first frame was `start` "
        f"in {len(frames) - not_start} of {len(frames)}; p99 of {len(frames)} samples is "
        "nearly the maximum",
    ]
    step_errors = sum(s.step_errors for s in (*first.streams, *burst.streams))
    if step_errors:
        lines.append(f"step_error frames (non-critical steps that failed): {step_errors}")
    for name, errors in (
        ("sync", sync.errors),
        ("sequential streams", first.errors),
        ("concurrent streams", burst.errors),
    ):
        if errors:
            lines.append(f"ERRORS in {name}: {len(errors)}, first: {errors[0]}")
    return Report(rows, lines, ok_ratio and ok_first and ok_burst)


def render_table(r: Report) -> Table:
    table = Table(
        *HEADERS,
        title="Scene generation against a scripted LLM",
        caption=escape("\n".join(r.lines)),  # server error bodies may contain [brackets]
        caption_justify="left",
    )
    for row in r.rows:
        table.add_row(*row, style="bold red" if row[-1].startswith("FAIL") else None)
    return table


def render_markdown(r: Report) -> str:
    out = ["| " + " | ".join(HEADERS) + " |", "| --- | ---: | --- | --- | --- |"]
    out += ["| " + " | ".join(row) + " |" for row in r.rows]
    return "\n".join([*out, "", *(f"- {line}" for line in r.lines)])


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, out: Console) -> bool:
    status = Console(stderr=True)
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-bench-")))
        peer = stack.enter_context(llm_peer(data_dir, args.latency))
        server = stack.enter_context(tollhouse_server(data_dir, peer.base_url))
        with asyncio.Runner(loop_factory=auth._event_loop_factory()) as runner:
            try:
                measurements = runner.run(measure(server, peer, args, status))
            except httpx.HTTPError as exc:
                alive = {p: Path(f"/proc/{p}").exists() for p in (server.pid, peer.pid)}
                raise auth.BenchError(
                    f"{type(exc).__name__}: {exc} (Tollhouse alive: {alive[server.pid]}, "
                    f"LLM peer alive: {alive[peer.pid]})\nserver log:\n"
                    f"{auth._tail(data_dir / 'server.log')}\nLLM peer log:\n"
                    f"{auth._tail(data_dir / 'llm-peer.log')}"
                ) from exc
    result = report(measurements, args)
    if args.markdown:
        out.print(render_markdown(result), markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(render_table(result))
    return result.passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="LLM seconds per call")
    parser.add_argument("--runs", type=int, default=5, help="sequential sync generations")
    parser.add_argument("--streams", type=int, default=20, help="streams for the first frame")
    parser.add_argument("--concurrent", type=int, default=100, help="streams opened at once")
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table for bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.latency <= 0 or min(args.runs, args.streams, args.concurrent) < 1:
        parser.error("--latency must be > 0; --runs, --streams, --concurrent >= 1")
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    sys.exit(main())
