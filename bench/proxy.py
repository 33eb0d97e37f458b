"""What Tollhouse's upstream proxy adds: the same GET straight to a loopback upstream and
through `/gw/{project}/up/ping` (secret key + end-user token + quota on an unlimited tier +
forward), in one run, from the same load generator.

1. Max throughput, closed loop (--concurrency raw keep-alive connections), of both paths and
   their ratio (target: >= 1,500 requests/s through Tollhouse, metering on).
2. Added latency at a fixed rate (open loop, --rate requests/s scheduled at fixed intervals;
   latency counted from the scheduled send time, so a stall is not hidden): through-Tollhouse
   minus direct at p50 and p99 (targets: <= 2 ms and <= 10 ms at 200 requests/s).
3. For scale, in the same run and closed loop: nginx (one process, plain reverse proxy) and a
   bare Starlette + aiohttp forwarder (`references.py`) in front of the same upstream; each
   proxy's CPU per request (its CPU share / its requests/s) and Tollhouse's as a multiple
   (target: within 25x of nginx's).
4. Overload: open loop at twice the throughput measured in 1; past MAX_CONCURRENT_REQUESTS
   (--max-in-flight) the excess is shed with 503 + Retry-After, and the requests served keep
   their latency (target: their p99 <= 50 ms).

Run `.venv/bin/python bench/proxy.py` (flags: --duration, --rate-duration, --concurrency,
--rate, --workers, --max-in-flight). The upstream is a tiny Starlette app
(`reference_apps.upstream`) under uvicorn in its own process; Tollhouse is bench/auth.py's
`tollhouse serve --workers 2` on SQLite in a temp dir (development mode, so a loopback
upstream URL is allowed); the route is registered through the same service call the
Developer API makes. Every target is printed with PASS/FAIL beside its baseline from the
same run. Exit status 0 all targets pass, 1 one fails, 2 no run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

import auth
import references
from platform_api import _end_user_headers, _make_project, _wait_for_listeners
from reference_apps import PING_PATH
from tollhouse.config import load_settings, normalize_database_url
from tollhouse.db import migrate
from tollhouse.db.engine import Database
from tollhouse.tenancy.models import Project
from tollhouse.upstreams import platform

PREFIX = "up"
TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 10.0
TARGET_MAX_RPS = 1_500.0
STRETCH_MAX_RPS = 2_500.0
TARGET_CPU_VS_NGINX = 25.0
TARGET_OVERLOAD_P99_MS = 50.0
OVERLOAD_FACTOR = 2.0
SHED_STATUS = 503
RATE_CONNECTIONS = 32  # the open-loop pool; more are opened if all are busy


# --- the upstream -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upstream:
    base_url: str
    pid: int


@contextmanager
def upstream_server(data_dir: Path) -> Iterator[Upstream]:
    """`uvicorn reference_apps:upstream` on a free loopback port, one worker, no access log."""
    port = auth._free_port()
    log_path = data_dir / "upstream.log"
    command = [
        sys.executable, "-m", "uvicorn", "reference_apps:upstream",
        "--app-dir", str(Path(__file__).parent),
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=data_dir, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            references.wait_for(base_url + PING_PATH, process, log_path, "the upstream")
            yield Upstream(base_url, process.pid)
        finally:
            auth._stop(process)


# --- setup ------------------------------------------------------------------------------------


async def _register_route(data_dir: Path, url: str, upstream_url: str) -> str:
    """The bench project's id, with `/gw/{id}/up/*` → the upstream (GET, 1 unit)."""
    settings = load_settings(tollhouse_data_dir=data_dir, database_url=url)
    database = Database(url)
    try:
        async with database.session() as session:
            project = await session.scalar(select(Project).where(Project.name == "bench"))
            if project is None:
                raise auth.BenchError("the bench project was not created")
            body = platform.UpstreamRouteCreate(
                path_prefix=PREFIX, upstream_url=upstream_url, methods=["GET"], units=1
            )
            await platform.create_route(
                session, project.id, body, allow_private=settings.private_urls_allowed
            )
            project_id = project.id
    finally:
        await database.dispose()
    return project_id


# --- load (runs in the load process) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One row: a load result plus both processes' CPU (share of one core) in the window."""

    mode: str  # "max" or "rate"
    result: auth.LoadResult
    proxy_cpu: float | None  # Tollhouse's or a reference proxy's; None for the direct rows
    upstream_cpu: float | None
    sent_rps: float = math.nan
    shed: int = 0  # open loop: answered 503 (load shedding), neither served nor errors

    @property
    def cpu_ms_per_request(self) -> float:
        """The proxy's CPU per request answered, in ms (NaN for the direct rows)."""
        rps = self.result.rps
        return math.nan if self.proxy_cpu is None or not rps else 1000 * self.proxy_cpu / rps


async def _closed_loop(
    spec: auth.LoadSpec, target: auth.Target, upstream_pid: int
) -> tuple[auth.LoadResult, float | None]:
    """auth's closed loop (C workers back to back), also timing the upstream's CPU."""
    async with auth._senders(spec) as senders:
        start = time.perf_counter() + auth.WARMUP_SECONDS
        tally = auth._Tally(window_start=start, window_end=start + spec.duration)
        server_cpu = asyncio.create_task(auth._cpu_during_window(spec.server_pid, tally))
        upstream_cpu = asyncio.create_task(auth._cpu_during_window(upstream_pid, tally))
        await asyncio.gather(
            *(auth._worker(sender, target, tally, index) for index, sender in enumerate(senders))
        )
        cpu, up_cpu = await server_cpu, await upstream_cpu
    return _result(target.label, spec.duration, tally, cpu), up_cpu


async def _open_loop(
    spec: auth.LoadSpec, target: auth.Target, rate: float, upstream_pid: int
) -> tuple[auth.LoadResult, float | None, float, int]:
    """Requests scheduled every 1/rate s whatever the answers do; latency from the schedule.

    Each request takes an idle keep-alive connection from a pool (a new one when all are
    busy), so a slow answer delays no later request: no coordinated omission.
    """
    url = httpx.URL(spec.base_url)
    idle: list[tuple[auth.RawConnection, auth.RequestHeaders]] = []
    opened = 0

    def take() -> tuple[auth.RawConnection, auth.RequestHeaders]:
        nonlocal opened
        if idle:
            return idle.pop()
        opened += 1
        return auth.RawConnection(url.host, url.port or 80), auth.RequestHeaders(target, opened)

    for _ in range(RATE_CONNECTIONS):
        idle.append(take())
    start = time.perf_counter() + auth.WARMUP_SECONDS
    tally = auth._Tally(window_start=start, window_end=start + spec.duration)
    server_cpu = asyncio.create_task(auth._cpu_during_window(spec.server_pid, tally))
    upstream_cpu = asyncio.create_task(auth._cpu_during_window(upstream_pid, tally))

    shed = 0

    async def one(scheduled: float) -> None:
        nonlocal shed
        connection, headers = take()
        error: str | None = None
        try:
            status, body = await connection.get(target.path, headers.current())
            if status == SHED_STATUS:
                done = time.perf_counter()
                shed += tally.window_start <= done < tally.window_end
                idle.append((connection, headers))
                return
            if status != 200:
                error = f"{status} {body[:200].decode(errors='replace')}"
        except auth.TRANSPORT_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
        tally.record(scheduled, time.perf_counter(), error)
        idle.append((connection, headers))

    begin = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    sent, index = 0, 0
    while (scheduled := begin + index / rate) < tally.window_end:
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += tally.window_start <= scheduled
        index += 1
    await asyncio.gather(*tasks)
    cpu, up_cpu = await server_cpu, await upstream_cpu
    for connection, _ in idle:
        await connection.aclose()
    return _result(target.label, spec.duration, tally, cpu), up_cpu, sent / spec.duration, shed


def _result(
    label: str, seconds: float, tally: auth._Tally, server_cpu: float | None
) -> auth.LoadResult:
    latencies = sorted(tally.latencies)
    return auth.LoadResult(
        label=label,
        ok=len(latencies),
        errors=tally.errors,
        seconds=seconds,
        p50_ms=auth._percentile_ms(latencies, 0.50),
        p99_ms=auth._percentile_ms(latencies, 0.99),
        server_cpu=server_cpu,
        first_error=tally.first_error,
    )


def run_load(
    spec: auth.LoadSpec,
    target: auth.Target,
    rate: float | None,
    upstream_pid: int,
) -> Run:
    """Load-process entry: closed loop when rate is None, else open loop at `rate`."""
    # spec.server_pid is the process that answers (the upstream for the direct rows).
    shed = 0
    with asyncio.Runner(loop_factory=auth._event_loop_factory()) as runner:
        if rate is None:
            result, up_cpu = runner.run(_closed_loop(spec, target, upstream_pid))
            sent = math.nan
        else:
            result, up_cpu, sent, shed = runner.run(_open_loop(spec, target, rate, upstream_pid))
    proxy_cpu = result.server_cpu if spec.server_pid != upstream_pid else None
    return Run("max" if rate is None else "rate", result, proxy_cpu, up_cpu, sent, shed)


# --- report -----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(runs: dict[str, Run], args: argparse.Namespace) -> tuple[Table, list[str], bool]:
    max_direct, max_proxy = runs["max direct"].result, runs["max proxy"].result
    rate_direct, rate_proxy = runs["rate direct"].result, runs["rate proxy"].result
    overload = runs["overload proxy"]
    ratio = max_proxy.rps / max_direct.rps if max_direct.rps else math.nan
    added_p50 = rate_proxy.p50_ms - rate_direct.p50_ms
    added_p99 = rate_proxy.p99_ms - rate_direct.p99_ms
    nginx = runs.get("max nginx")
    cpu_vs_nginx = (
        runs["max proxy"].cpu_ms_per_request / nginx.cpu_ms_per_request
        if nginx is not None
        else math.nan
    )
    errors = sum(run.result.errors for run in runs.values())
    verdicts = {
        "max": max_proxy.rps >= TARGET_MAX_RPS and not max_proxy.errors,
        "cpu": cpu_vs_nginx <= TARGET_CPU_VS_NGINX,  # NaN (no nginx) fails
        "p50": added_p50 <= TARGET_ADDED_P50_MS and not rate_proxy.errors,
        "p99": added_p99 <= TARGET_ADDED_P99_MS and not rate_proxy.errors,
        "overload": (
            overload.result.ok > 0
            and overload.result.p99_ms <= TARGET_OVERLOAD_P99_MS
            and not overload.result.errors
        ),
    }
    table = Table(
        "load", "path", "requests/s", "p50 ms", "p99 ms", "errors", "shed (503)", "proxy CPU",
        "proxy CPU/req ms", "upstream CPU",
        title=f"GET {PING_PATH}: straight to the upstream vs through /gw/…/{PREFIX}{PING_PATH}",
        caption_justify="left",
    )  # fmt: skip
    for run in runs.values():
        r = run.result
        load = (
            f"closed, {args.concurrency} conn"
            if run.mode == "max"
            else f"open, {run.sent_rps:,.0f}/s sent"
        )
        table.add_row(
            load,
            r.label,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            str(run.shed) if run.mode == "rate" else "",
            _pct(run.proxy_cpu),
            "" if math.isnan(run.cpu_ms_per_request) else f"{run.cpu_ms_per_request:.3f}",
            _pct(run.upstream_cpu),
            style="bold red" if r.errors else None,
        )
    stretch = "met" if max_proxy.rps >= STRETCH_MAX_RPS else "not met"
    lines = [
        f"{_verdict(verdicts['max'])} max throughput through Tollhouse, metering on: "
        f"{max_proxy.rps:,.0f}/s (target >= {TARGET_MAX_RPS:,.0f}/s, stretch "
        f"{STRETCH_MAX_RPS:,.0f}/s {stretch}); baseline: the upstream direct "
        f"{max_direct.rps:,.0f}/s ({ratio:.2f}x)",
        f"{_verdict(verdicts['cpu'])} CPU per request {cpu_vs_nginx:.1f}x nginx's "
        f"(target <= {TARGET_CPU_VS_NGINX:g}x)"
        + ("" if nginx is not None else ": nginx not measured (not installed)"),
        f"{_verdict(verdicts['p50'])} added latency at {args.rate:g}/s open loop, p50 "
        f"{added_p50:+.2f} ms (target <= {TARGET_ADDED_P50_MS:g}); baseline: direct p50 "
        f"{rate_direct.p50_ms:.2f} ms",
        f"{_verdict(verdicts['p99'])} added latency at {args.rate:g}/s open loop, p99 "
        f"{added_p99:+.2f} ms (target <= {TARGET_ADDED_P99_MS:g}); baseline: direct p99 "
        f"{rate_direct.p99_ms:.2f} ms",
        f"{_verdict(verdicts['overload'])} at {OVERLOAD_FACTOR:g}x capacity "
        f"({overload.sent_rps:,.0f}/s sent): served {overload.result.rps:,.0f}/s with p99 "
        f"{overload.result.p99_ms:.2f} ms (target <= {TARGET_OVERLOAD_P99_MS:g}), "
        f"{overload.shed} shed with 503",
        f"Tollhouse: `tollhouse serve --workers {args.workers}`, "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, LOG_LEVEL=WARNING, "
        f"MAX_CONCURRENT_REQUESTS={args.max_in_flight}; upstream: Starlette under uvicorn, "
        f"1 worker; load: one separate process, raw keep-alive GETs on uvloop; closed rows "
        f"{args.duration:g} s, open rows {args.rate_duration:g} s (overload "
        f"{args.duration:g} s), each after {auth.WARMUP_SECONDS:g} s warm-up; CPU = share of "
        f"one core in the window (all of Tollhouse's workers)",
    ]
    lines += _reference_lines(runs)
    lines += [
        f"ERRORS in {name}: {run.result.errors}, first: {run.result.first_error}"
        for name, run in runs.items()
        if run.result.errors
    ]
    return table, lines, all(verdicts.values()) and not errors


def _reference_lines(runs: dict[str, Run]) -> list[str]:
    """Tollhouse against each reference measured in this run (same-run ratios)."""
    tollhouse = runs["max proxy"]
    lines = []
    for name in ("max nginx", "max aiohttp"):
        reference = runs.get(name)
        if reference is None:
            lines.append(f"{name.removeprefix('max ')}: not measured (not installed)")
            continue
        cpu = tollhouse.cpu_ms_per_request / reference.cpu_ms_per_request
        rps = tollhouse.result.rps / reference.result.rps if reference.result.rps else math.nan
        lines.append(
            f"Tollhouse vs {reference.result.label}: {rps:.2f}x the requests/s, "
            f"{cpu:.1f}x the CPU per request ({tollhouse.cpu_ms_per_request:.3f} vs "
            f"{reference.cpu_ms_per_request:.3f} ms)"
        )
    return lines


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, out: Console) -> bool:
    with ExitStack() as stack:
        issuer = stack.enter_context(auth.running_issuer(auth.ISSUER, auth.AUDIENCE, auth.JWKS_KID))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-bench-")))
        url = f"sqlite+aiosqlite:///{data_dir / 'tollhouse.db'}"
        up = stack.enter_context(upstream_server(data_dir))
        nginx = stack.enter_context(references.nginx_proxy(data_dir, up.base_url, PING_PATH))
        bare = stack.enter_context(references.aiohttp_forwarder(data_dir, up.base_url, PING_PATH))
        # The server runs in data_dir and reads its .env (bench/auth.py's environment is fixed).
        env_lines = [f"MAX_CONCURRENT_REQUESTS={args.max_in_flight}"]
        if args.database_url:  # an empty PostgreSQL database, ours to fill
            url = normalize_database_url(args.database_url)
            migrate.upgrade(url)
            env_lines.append(f"DATABASE_URL={args.database_url}")
        (data_dir / ".env").write_text("\n".join(env_lines) + "\n")
        server = stack.enter_context(auth.tollhouse_server(data_dir, issuer, args.workers))
        if args.workers > 1:
            _wait_for_listeners(server.base_url, args.workers)
        secret = asyncio.run(_make_project(data_dir, url))
        project_id = asyncio.run(_register_route(data_dir, url, up.base_url))
        gw_path = f"/gw/{project_id}/{PREFIX}{PING_PATH}"
        secret_header = {"Authorization": f"Bearer {secret}"}
        connections = max(args.concurrency, RATE_CONNECTIONS)
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            end_users = tuple(
                _end_user_headers(client, secret, index) for index in range(connections)
            )
            check = client.get(gw_path, headers={**secret_header, **end_users[0]})
            if check.status_code != 200 or check.json().get("pong") is not True:
                raise auth.BenchError(f"GET {gw_path} answered {check.status_code}: {check.text}")
        direct = auth.Target("direct", PING_PATH)
        proxied = auth.Target("Tollhouse", gw_path, secret_header, per_connection=end_users)
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        )
        plan = [
            ("max direct", up.base_url, up.pid, direct, None, args.duration),
            ("max proxy", server.base_url, server.pid, proxied, None, args.duration),
            *[
                (
                    f"max {key}",
                    ref.base_url,
                    ref.pid,
                    auth.Target(ref.label, PING_PATH),
                    None,
                    args.duration,
                )
                for key, ref in (("nginx", nginx), ("aiohttp", bare))
                if ref is not None
            ],
            ("rate direct", up.base_url, up.pid, direct, args.rate, args.rate_duration),
            ("rate proxy", server.base_url, server.pid, proxied, args.rate, args.rate_duration),
        ]
        runs: dict[str, Run] = {}
        with Console(stderr=True).status("starting") as spinner:
            for name, base_url, pid, target, rate, duration in plan:
                spinner.update(f"measuring {name}")
                spec = auth.LoadSpec(base_url, duration, args.concurrency, "raw", pid)
                runs[name] = pool.submit(run_load, spec, target, rate, up.pid).result()
            spinner.update("measuring overload proxy")
            capacity = max(runs["max proxy"].result.rps, args.rate)
            spec = auth.LoadSpec(
                server.base_url, args.duration, args.concurrency, "raw", server.pid
            )
            overload = OVERLOAD_FACTOR * capacity
            runs["overload proxy"] = pool.submit(run_load, spec, proxied, overload, up.pid).result()
    table, lines, passed = report(runs, args)
    table.caption = "\n".join(lines)
    out.print(table)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per closed-loop row")
    parser.add_argument(
        "--rate-duration", type=float, default=5.0, help="seconds per fixed-rate row"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed rate, requests/s")
    parser.add_argument("--workers", type=int, default=2, help="`tollhouse serve --workers`")
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to run on (default: SQLite)"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=32, help="MAX_CONCURRENT_REQUESTS per worker"
    )
    args = parser.parse_args(argv)
    if min(args.duration, args.rate_duration, args.rate) <= 0 or args.concurrency < 1:
        parser.error("durations and --rate must be > 0, --concurrency >= 1")
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    sys.exit(main())
