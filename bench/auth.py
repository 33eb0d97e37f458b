"""How much each auth path costs: GET /api/v1/auth/me per credential kind, against GET /health.

Run `make bench` (= `.venv/bin/python bench/auth.py`); flags: --duration, --concurrency,
--client, --markdown. It starts its own server (one uvicorn worker, SQLite in a fresh temp
dir, a local JWKS issuer), loads each path for --duration seconds after a 1 s warm-up from a
separate process, and prints one table. /health is measured before and after the auth paths;
the mean of the two is the baseline, which cancels slow drift. Absolute numbers depend on the
machine; the ratio to /health is the figure to compare.

Exit status: 0 all paths pass, 1 a path is under the target or had errors, 2 no run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jwks_server import LocalIssuer, running_issuer  # bench/ is on sys.path as the script dir
from tollhouse.identity import gateway_signing

TARGET_RATIO = 0.6
WARMUP_SECONDS = 1.0
HEALTH_PATH = "/health"
ME_PATH = "/api/v1/auth/me"
BENCH_EXTERNAL_ID = "bench-user-1"
ISSUER = "https://bench-issuer.local"
AUDIENCE = "bench-api"
JWKS_KID = "bench-1"
STARTUP_TIMEOUT_SECONDS = 90.0  # importing Tollhouse took ~30 s on a loaded shared machine
LOAD_GENERATORS = {
    "raw": "asyncio streams on uvloop, hand-rolled HTTP/1.1 GET",
    "httpx": "asyncio + httpx.AsyncClient",
}


class BenchError(RuntimeError):
    """The benchmark could not run; the message says what the server answered."""


# --- what to request -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    secret: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Target:
    """One row of the table: a path and the credentials sent with every request."""

    label: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    # Extra headers per connection, round-robin (e.g. one end user per connection).
    per_connection: tuple[dict[str, str], ...] = ()
    # Signed-gateway requests carry a timestamp the server checks (±300 s), so they are
    # re-signed as the clock moves rather than once, and any --duration stays valid.
    gateway: GatewayCredentials | None = None

    @property
    def is_baseline(self) -> bool:
        return self.path == HEALTH_PATH


class RequestHeaders:
    """The headers for the next request; gateway signatures are refreshed once a second."""

    def __init__(self, target: Target, connection: int = 0) -> None:
        self._target = target
        self._signed_at = -1
        own = (
            target.per_connection[connection % len(target.per_connection)]
            if (target.per_connection)
            else {}
        )
        self._headers = {**target.headers, **own}

    def current(self) -> dict[str, str]:
        gateway = self._target.gateway
        if gateway is None:
            return self._headers
        now = int(time.time())
        if now != self._signed_at:
            timestamp = str(now)
            signature = gateway_signing.sign(
                gateway.secret, "GET", self._target.path, gateway.user_id, timestamp
            )
            self._headers = {
                **self._target.headers,
                "X-User-Id": gateway.user_id,
                "X-Gateway-Timestamp": timestamp,
                "X-Gateway-Signature": signature,
            }
            self._signed_at = now
        return self._headers


# --- load generation (runs in its own process) -----------------------------------------------

CLIENTS = ("raw", "httpx")
# What a worker counts as a failed request rather than a crash of the benchmark.
TRANSPORT_ERRORS = (OSError, EOFError, ValueError, asyncio.LimitOverrunError, httpx.HTTPError)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    base_url: str
    duration: float
    concurrency: int
    client: str  # one of CLIENTS
    server_pid: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    label: str
    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Share of one core the server process used during the window (None off Linux): near
    # 100 % means the server was the bottleneck, lower means the load generator was.
    server_cpu: float | None
    first_error: str | None

    @property
    def rps(self) -> float:
        return self.ok / self.seconds


class Sender(Protocol):
    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class HttpxSender:
    """All workers share one AsyncClient and its pool, as an application would."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        response = await self._client.get(path, headers=headers)
        return response.status_code, response.content

    async def aclose(self) -> None:
        """The client is closed by its owner."""


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and keep-alive from a response head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }
    if "content-length" not in fields:
        raise ValueError("response without Content-Length (chunked bodies are not supported)")
    keep_alive = fields.get("connection", "").lower() != "close"
    return int(status_line.split(" ", 2)[1]), int(fields["content-length"]), keep_alive


class RawConnection:
    """One keep-alive HTTP/1.1 connection that only sends GETs.

    httpx costs a whole core at well under 1,000 requests/s here, several times less than
    the server answers /health, so it would measure itself; this costs a fraction of that.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._encoded: tuple[str, dict[str, str], bytes] | None = None

    def _request(self, path: str, headers: dict[str, str]) -> bytes:
        # RequestHeaders hands out the same dict until it re-signs, so encode on change only.
        if self._encoded is None or self._encoded[:2] != (path, headers):
            lines = [f"GET {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            self._encoded = (path, headers, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return self._encoded[2]

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        try:
            writer.write(self._request(path, headers))
            status, length, keep_alive = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            body = await reader.readexactly(length)
        except TRANSPORT_ERRORS:
            await self.aclose()  # mid-response: the stream cannot be reused
            raise
        if not keep_alive:
            await self.aclose()
        return status, body

    async def aclose(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


@asynccontextmanager
async def _senders(spec: LoadSpec) -> AsyncIterator[list[Sender]]:
    """One sender per worker: a shared httpx client, or a raw connection each."""
    if spec.client == "httpx":
        limits = httpx.Limits(
            max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
        )
        async with httpx.AsyncClient(base_url=spec.base_url, limits=limits, timeout=30) as client:
            yield [HttpxSender(client)] * spec.concurrency
        return
    url = httpx.URL(spec.base_url)
    port = url.port or 80
    connections: list[Sender] = [RawConnection(url.host, port) for _ in range(spec.concurrency)]
    try:
        yield connections
    finally:
        for connection in connections:
            await connection.aclose()


@dataclass(slots=True)
class _Tally:
    window_start: float
    window_end: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def record(self, sent: float, done: float, error: str | None) -> None:
        # A request counts when it completes inside the window, so in-flight requests at
        # the start and at the end balance out.
        if not self.window_start <= done < self.window_end:
            return
        if error is None:
            self.latencies.append(done - sent)
            return
        self.errors += 1
        self.first_error = self.first_error or error


def _server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of the whole server process, all threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the ")" that ends the command name, utime and stime are the 12th and 13th.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _worker(sender: Sender, target: Target, tally: _Tally, connection: int) -> None:
    headers = RequestHeaders(target, connection)
    while (sent := time.perf_counter()) < tally.window_end:
        error: str | None = None
        try:
            status, body = await sender.get(target.path, headers.current())
            if status != 200:
                error = f"{status} {body[:200].decode(errors='replace')}"
        except TRANSPORT_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
        tally.record(sent, time.perf_counter(), error)


async def _cpu_during_window(server_pid: int, tally: _Tally) -> float | None:
    await asyncio.sleep(tally.window_start - time.perf_counter())
    started, cpu_before = time.perf_counter(), _server_cpu_seconds(server_pid)
    await asyncio.sleep(tally.window_end - time.perf_counter())
    elapsed, cpu_after = time.perf_counter() - started, _server_cpu_seconds(server_pid)
    if cpu_before is None or cpu_after is None:
        return None
    return (cpu_after - cpu_before) / elapsed


def _percentile_ms(sorted_seconds: list[float], quantile: float) -> float:
    """Nearest-rank percentile: an actual observed latency, never an interpolation."""
    if not sorted_seconds:
        return math.nan
    rank = max(math.ceil(quantile * len(sorted_seconds)) - 1, 0)
    return sorted_seconds[rank] * 1000


async def _load(spec: LoadSpec, target: Target) -> LoadResult:
    async with _senders(spec) as senders:
        start = time.perf_counter() + WARMUP_SECONDS
        tally = _Tally(window_start=start, window_end=start + spec.duration)
        cpu = asyncio.create_task(_cpu_during_window(spec.server_pid, tally))
        await asyncio.gather(
            *(_worker(sender, target, tally, index) for index, sender in enumerate(senders))
        )
        server_cpu = await cpu
    latencies = sorted(tally.latencies)
    return LoadResult(
        label=target.label,
        ok=len(latencies),
        errors=tally.errors,
        seconds=spec.duration,
        p50_ms=_percentile_ms(latencies, 0.50),
        p99_ms=_percentile_ms(latencies, 0.99),
        server_cpu=server_cpu,
        first_error=tally.first_error,
    )


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when present (the server uses it too): a cheaper client leaves more headroom."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_load(spec: LoadSpec, target: Target) -> LoadResult:
    """Entry point of the load process: C workers loop on one target for warm-up + duration."""
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        return runner.run(_load(spec, target))


# --- the server under test -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    base_url: str
    pid: int
    service_key: str
    gateway_secret: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tollhouse_executable() -> Path:
    executable = Path(sys.executable).with_name("tollhouse")
    if not executable.exists():
        raise BenchError(f"{executable} not found: run with the project's .venv/bin/python")
    return executable


def _server_env(
    data_dir: Path, issuer: LocalIssuer, service_key: str, gateway_secret: str
) -> dict[str, str]:
    issuers = [{"issuer": issuer.issuer, "jwks_url": issuer.jwks_url, "audience": issuer.audience}]
    return {
        "PATH": os.environ.get("PATH", ""),
        "TOLLHOUSE_DATA_DIR": str(data_dir),
        "FLASH_SERVICE_KEY": service_key,
        "GATEWAY_SIGNING_SECRET": gateway_secret,
        "JWT_ISSUERS": json.dumps(issuers),
        # No per-request log line: the table should show the request path's cost, not I/O.
        "LOG_LEVEL": "WARNING",
        # CALLER_CACHE_SECONDS=0 in the bench's environment measures every path uncached.
        **{name: os.environ[name] for name in ("CALLER_CACHE_SECONDS",) if name in os.environ},
    }


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(base_url + HEALTH_PATH, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.1)
    raise BenchError(
        f"/health did not answer 200 within {STARTUP_TIMEOUT_SECONDS:.0f} s:\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def tollhouse_server(data_dir: Path, issuer: LocalIssuer) -> Iterator[Server]:
    """`tollhouse serve` with one worker on a free port; stopped when the block exits."""
    port = _free_port()
    service_key, gateway_secret = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
    command = [str(_tollhouse_executable()), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", "1"],
            env=_server_env(data_dir, issuer, service_key, gateway_secret),
            cwd=data_dir,  # so no stray .env from the checkout is read
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(base_url, process, log_path)
            yield Server(base_url, process.pid, service_key, gateway_secret)
        finally:
            _stop(process)


# --- setting up credentials ------------------------------------------------------------------


def _post_json(client: httpx.Client, path: str, key: str, body: dict[str, str]) -> dict[str, str]:
    response = client.post(path, headers={"X-Service-Key": key}, json=body)
    if response.status_code != 200:
        raise BenchError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    data: dict[str, str] = response.json()
    return data


def build_targets(client: httpx.Client, server: Server, issuer: LocalIssuer) -> list[Target]:
    key = server.service_key
    user_id = _post_json(client, "/api/v1/users/resolve", key, {"external_id": BENCH_EXTERNAL_ID})
    uid = str(user_id["user_id"])
    pair = _post_json(client, "/api/v1/auth/token", key, {"user_id": uid})
    return [
        Target("service key + user", ME_PATH, {"X-Service-Key": key, "X-User-ID": uid}),
        Target(
            "HMAC signed gateway", ME_PATH, gateway=GatewayCredentials(server.gateway_secret, uid)
        ),
        Target("own JWT (HS256)", ME_PATH, {"Authorization": f"Bearer {pair['access_token']}"}),
        Target(
            "JWKS JWT (RS256)",
            ME_PATH,
            {"Authorization": f"Bearer {issuer.token('bench-user')}"},
        ),
    ]


def check_targets(client: httpx.Client, targets: list[Target]) -> None:
    """One request per path before measuring: a broken path fails loudly, not as a 0 row.

    It also does the one-off work outside the window: the JWKS path fetches the key set and
    creates its user here.
    """
    for target in targets:
        response = client.get(target.path, headers=RequestHeaders(target).current())
        if response.status_code != 200:
            raise BenchError(
                f"{target.label}: GET {target.path} answered {response.status_code}: "
                f"{response.text[:500]}"
            )


# --- report ----------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


@dataclass(frozen=True, slots=True)
class Row:
    result: LoadResult
    ratio: float
    is_baseline: bool

    @property
    def verdict(self) -> str:
        if self.result.errors:
            return "FAIL (errors)"
        if self.is_baseline:
            return "baseline"
        return "PASS" if self.ratio >= TARGET_RATIO else "FAIL"

    def cells(self) -> list[str]:
        r = self.result
        cpu = "n/a" if r.server_cpu is None else f"{r.server_cpu:.0%}"
        return [
            r.label,
            f"{r.rps:,.0f}",
            _ms(r.p50_ms),
            _ms(r.p99_ms),
            str(r.errors),
            f"{self.ratio:.2f}x",
            self.verdict,
            cpu,
        ]


HEADERS = [
    "path",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "vs /health",
    f"target {TARGET_RATIO}x",
    "server CPU",
]


def make_rows(results: list[LoadResult], targets: list[Target]) -> tuple[list[Row], float]:
    baseline = statistics.fmean(
        r.rps for r, t in zip(results, targets, strict=True) if t.is_baseline
    )
    rows = [
        Row(r, r.rps / baseline if baseline else math.nan, t.is_baseline)
        for r, t in zip(results, targets, strict=True)
    ]
    return rows, baseline


def notes(
    rows: list[Row], baseline: float, args: argparse.Namespace, issuer: LocalIssuer
) -> list[str]:
    health = [row.result.rps for row in rows if row.is_baseline]
    drift = (max(health) - min(health)) / baseline if baseline else math.nan
    lines = [
        f"baseline = mean of the two /health runs = {baseline:,.0f} req/s "
        f"(they differ by {drift:.1%})",
        "server: `tollhouse serve --workers 1`, SQLite, LOG_LEVEL=WARNING (no access log "
        "lines, so this measures the request path)",
        f"load: one separate process, {LOAD_GENERATORS[args.client]}, keep-alive, "
        f"{args.concurrency} connection(s), {args.duration:g} s per row after "
        f"{WARMUP_SECONDS:g} s warm-up",
        "server CPU: share of one core the server used; well under 100% means the load "
        "generator, not the server, was the limit",
        f"JWKS fetched {issuer.fetches}x by the server during the run",
    ]
    lines += [
        f"ERRORS in {row.result.label}: {row.result.errors}, first: {row.result.first_error}"
        for row in rows
        if row.result.errors
    ]
    return lines


def render_table(rows: list[Row], lines: list[str]) -> Table:
    table = Table(
        *HEADERS,
        title=f"GET {ME_PATH} per auth path vs GET {HEALTH_PATH}",
        caption=escape("\n".join(lines)),  # server error bodies may contain [brackets]
        caption_justify="left",
    )
    for row in rows:
        style = (
            "bold red" if row.verdict.startswith("FAIL") else ("dim" if row.is_baseline else None)
        )
        table.add_row(*row.cells(), style=style)
    return table


def render_markdown(rows: list[Row], lines: list[str]) -> str:
    # Numbers right-aligned; the label and the verdict left.
    align = ["---", "---:", "---:", "---:", "---:", "---:", "---", "---:"]
    out = ["| " + " | ".join(HEADERS) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join([*out, "", *(f"- {line}" for line in lines)])


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per row")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="raw",
        help="load generator: raw sockets (default) or httpx, which saturates its own core "
        "long before the server and so understates /health",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table for bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1:
        parser.error("--duration must be > 0 and --concurrency >= 1")
    return args


def measure(
    pool: ProcessPoolExecutor,
    server: Server,
    targets: list[Target],
    args: argparse.Namespace,
    status: Console,
) -> list[LoadResult]:
    spec = LoadSpec(server.base_url, args.duration, args.concurrency, args.client, server.pid)
    results: list[LoadResult] = []
    # A transient spinner on stderr: the only lasting output is the table.
    with status.status("starting") as spinner:
        for number, target in enumerate(targets, start=1):
            spinner.update(f"measuring {target.label} ({number}/{len(targets)})")
            results.append(pool.submit(run_load, spec, target).result())
    return results


def run(args: argparse.Namespace, out: Console, status: Console) -> bool:
    with ExitStack() as stack:
        issuer = stack.enter_context(running_issuer(ISSUER, AUDIENCE, JWKS_KID))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-bench-")))
        server = stack.enter_context(tollhouse_server(data_dir, issuer))
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            auth_targets = build_targets(client, server, issuer)
            check_targets(client, auth_targets)
        health = Target("/health", HEALTH_PATH)
        targets = [health, *auth_targets, Target("/health (again)", HEALTH_PATH)]
        # spawn, not fork: this process runs the JWKS thread, and a forked copy of a
        # threaded process is not safe.
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        )
        results = measure(pool, server, targets, args, status)
        rows, baseline = make_rows(results, targets)
        lines = notes(rows, baseline, args, issuer)
    if args.markdown:
        out.print(render_markdown(rows, lines), markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(render_table(rows, lines))
    return all(not row.verdict.startswith("FAIL") for row in rows)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # Python's default for SIGTERM skips `finally`, which would leave the server running.
    raise SystemExit(128 + signum)


def run_main(run_bench: Callable[[Console], bool]) -> int:
    """The exit status of a bench script: 0 every target passed, 1 one failed, 2 no run."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out = Console()
    if not out.is_terminal:
        out.width = 120  # rich assumes 80 columns when piped, which wraps the labels
    try:
        return 0 if run_bench(out) else 1
    except BenchError as exc:
        Console(stderr=True).print(f"[red]bench failed:[/red] {exc}", highlight=False)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out, status = Console(), Console(stderr=True)
    if not out.is_terminal:
        out.width = 120  # rich assumes 80 columns when piped, which wraps the labels
    try:
        return 0 if run(args, out, status) else 1
    except BenchError as exc:
        status.print(f"[red]bench failed:[/red] {exc}", markup=True, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
