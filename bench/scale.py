"""What a second replica buys: the cluster (`tollhouse.cluster`) with 1 and 2 replicas.

Two `tollhouse serve` replicas on PostgreSQL and Redis; one nginx in front of replica 1 only,
another in front of both (the same processes, so the rows differ only by the topology):

1. Throughput of `GET /health`, the metered Platform-API call (`POST /api/data`, an end
   user per connection, an unlimited tier) and a `/gw` call (1 unit, to a local upstream),
   each through the 1-replica nginx and the 2-replica nginx. The figure is the 2/1 ratio;
   on 2 cores the ceiling is 2x, and the load generator and nginx share those cores.
2. Revocation propagation: a key is revoked through replica 1's console and replica 2 is
   polled until it refuses the key: p50/p99 over --revocations keys, beside the round trip
   of one `GET /api/v1/status` to replica 2 (the poll's own resolution) from the same run.

Needs PostgreSQL and Redis: TOLLHOUSE_BENCH_DATABASE_URL (default: TOLLHOUSE_TEST_DATABASE_URL,
else postgresql://postgres@127.0.0.1:5432/postgres) names the server (a database of the
bench's own is created and dropped), TOLLHOUSE_BENCH_REDIS_URL (default:
TOLLHOUSE_TEST_REDIS_URL, else redis://127.0.0.1:6379/0); and nginx. The load comes from
bench/auth.py's raw generator in a separate process. Exit status: 0 when it ran, 2 when it
could not.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

import auth
import platform_api
from proxy import upstream_server
from reference_apps import PING_PATH
from tollhouse import cluster

CONSOLE = "/console/api/v1"
ADMIN_KEY = "bench-admin-key-0123456789abcdefghijklmnop"
PREFIX = "up"
REPLICA_LIMIT = 100_000  # requests a minute per end user: never the limit here


@dataclass(frozen=True, slots=True)
class Topology:
    one: str  # nginx → replica 1
    two: str  # nginx → replicas 1 and 2
    replicas: tuple[str, str]
    pids: tuple[int, int]


def _server_url(name: str) -> str:
    for variable in (f"TOLLHOUSE_BENCH_{name}_URL", f"TOLLHOUSE_TEST_{name}_URL"):
        if value := os.environ.get(variable):
            return value
    return {
        "DATABASE": "postgresql://postgres@127.0.0.1:5432/postgres",
        "REDIS": "redis://127.0.0.1:6379/0",
    }[name]


async def _drop_database(server_url: str, name: str) -> None:
    server = make_url(server_url).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@contextmanager
def topology(run_dir: Path) -> Iterator[Topology]:
    """`tollhouse.cluster` with two replicas, plus a second nginx in front of replica 1."""
    server = _server_url("DATABASE")
    name = f"tollhouse_bench_{uuid.uuid4().hex[:12]}"
    prefix = f"tollhouse:bench:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "TOLLHOUSE_ENV": "development",
        "DATABASE_URL": make_url(server).set(database=name).render_as_string(hide_password=False),
        "REDIS_URL": _server_url("REDIS"),
        "RATE_LIMIT_KEY_PREFIX": f"{prefix}rl:",
        "EVENTS_KEY_PREFIX": f"{prefix}events:",
        "METERING_KEY_PREFIX": f"{prefix}meter:",
        "INVALIDATION_CHANNEL": f"{prefix}invalidate",
        "CALLER_CACHE_SECONDS": "60",  # only the invalidation can explain a quick refusal
        "ADMIN_API_KEY": ADMIN_KEY,
        "LOG_LEVEL": "WARNING",
    }
    ports = (auth._free_port(), auth._free_port())
    both, single = auth._free_port(), auth._free_port()
    single_dir = run_dir / "one"
    single_dir.mkdir()
    nginx = [cluster.nginx_binary(), "-c", str(single_dir / "nginx.conf"), "-p", str(single_dir)]
    try:
        processes = cluster.start(run_dir / "two", "127.0.0.1", both, ports, env, workers=0)
        (single_dir / "nginx.conf").write_text(
            cluster.nginx_conf(single_dir, "127.0.0.1", single, ports[:1])
        )
        subprocess.run(nginx, check=True)
        yield Topology(
            f"http://127.0.0.1:{single}",
            f"http://127.0.0.1:{both}",
            (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"),
            (processes[0].pid, processes[1].pid),
        )
    finally:
        if (single_dir / "nginx.pid").exists():
            subprocess.run([*nginx, "-s", "quit"], check=False)
        cluster.stop(run_dir / "two")
        asyncio.run(_drop_database(server, name))


# --- setup, over HTTP -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    auth: dict[str, str]  # the developer's console session
    secret: dict[str, str]


def _ok(response: httpx.Response, status: int = 200) -> httpx.Response:
    if response.status_code != status:
        raise auth.BenchError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text}"
        )
    return response


def make_project(client: httpx.Client, upstream_url: str) -> Project:
    """A developer's project: an unlimited tier, a high rate limit, a /gw route."""
    body = {"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery"}
    session = _ok(client.post(f"{CONSOLE}/auth/signup", json=body), 201).json()["token"]
    client.cookies.clear()
    console = {"Cookie": f"tollhouse_session={session}"}
    created = _ok(
        client.post(f"{CONSOLE}/projects", json={"name": "bench", "type": "saas"}, headers=console),
        201,
    ).json()
    project = created["project"]["id"]
    base = f"{CONSOLE}/projects/{project}"
    _ok(client.patch(base, json={"rate_limit_per_minute": REPLICA_LIMIT}, headers=console))
    tier = {"name": "free", "limit": "unlimited"}
    _ok(client.post(f"{base}/tiers", json=tier, headers=console), 201)
    route = {"path_prefix": PREFIX, "upstream_url": upstream_url, "methods": ["GET"], "units": 1}
    _ok(client.post(f"{base}/upstreams", json=route, headers=console), 201)
    return Project(project, console, {"Authorization": f"Bearer {created['secret_key']}"})


def targets(client: httpx.Client, project: Project, connections: int) -> list[auth.Target]:
    secret = project.secret["Authorization"].removeprefix("Bearer ")
    end_users = tuple(
        platform_api._end_user_headers(client, secret, index) for index in range(connections)
    )
    gw_path = f"/gw/{project.id}/{PREFIX}{PING_PATH}"
    return [
        auth.Target("/health", auth.HEALTH_PATH),
        auth.Target("POST /api/data", platform_api.DATA_PATH, project.secret, end_users),
        auth.Target(f"GET /gw/…{PING_PATH}", gw_path, project.secret, end_users),
    ]


def check(client: httpx.Client, target: auth.Target) -> None:
    headers = {**target.headers, **(target.per_connection[0] if target.per_connection else {})}
    method = "POST" if target.path == platform_api.DATA_PATH else "GET"
    _ok(client.request(method, target.path, headers=headers))


# --- revocation -------------------------------------------------------------------------------


def revocation_seconds(topo: Topology, project: Project, samples: int) -> list[float]:
    """Per sample: a new key, trusted (cached) by replica 2, revoked through replica 1's
    console; seconds from the revoke's answer until replica 2 refuses the key."""
    keys_url = f"{CONSOLE}/projects/{project.id}/keys"
    found: list[float] = []
    with httpx.Client(base_url=topo.replicas[0]) as a, httpx.Client(base_url=topo.replicas[1]) as b:
        for _ in range(samples):
            issued = _ok(a.post(keys_url, json={"kind": "secret"}, headers=project.auth), 201)
            key = issued.json()
            secret = {"Authorization": f"Bearer {key['plaintext']}"}
            _ok(b.get("/api/v1/status", headers=secret))  # B caches it for 60 s
            _ok(a.post(f"{keys_url}/{key['key']['id']}/revoke", headers=project.auth))
            revoked = time.perf_counter()
            deadline = revoked + 5.0
            while b.get("/api/v1/status", headers=secret).status_code != 401:
                if time.perf_counter() > deadline:
                    raise auth.BenchError("replica 2 still trusted a revoked key after 5 s")
            found.append(time.perf_counter() - revoked)
    return found


def status_round_trip(topo: Topology, project: Project, samples: int) -> list[float]:
    """The poll's resolution: one `GET /api/v1/status` to replica 2 with a valid key."""
    seconds = []
    with httpx.Client(base_url=topo.replicas[1]) as b:
        _ok(b.get("/api/v1/status", headers=project.secret))
        for _ in range(samples):
            started = time.perf_counter()
            _ok(b.get("/api/v1/status", headers=project.secret))
            seconds.append(time.perf_counter() - started)
    return seconds


def _quantile_ms(seconds: list[float], quantile: float) -> float:
    return auth._percentile_ms(sorted(seconds), quantile)


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, out: Console) -> bool:
    with ExitStack() as stack:
        run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-scale-")))
        upstream = stack.enter_context(upstream_server(run_dir))
        topo = stack.enter_context(topology(run_dir))
        with httpx.Client(base_url=topo.two, timeout=30) as client:
            project = make_project(client, upstream.base_url)
            rows = targets(client, project, args.concurrency)
            for target in rows:
                check(client, target)
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        )
        results: dict[tuple[str, int], auth.LoadResult] = {}
        with Console(stderr=True).status("starting") as spinner:
            for target in rows:
                for replicas, url in ((1, topo.one), (2, topo.two)):
                    spinner.update(f"measuring {target.label} on {replicas} replica(s)")
                    spec = auth.LoadSpec(url, args.duration, args.concurrency, "raw", topo.pids[0])
                    results[(target.label, replicas)] = pool.submit(
                        platform_api.run_load, spec, target
                    ).result()
            spinner.update("measuring revocation propagation")
            propagation = revocation_seconds(topo, project, args.revocations)
            round_trip = status_round_trip(topo, project, args.revocations)
    out.print(_throughput_table(rows, results))
    out.print(_revocation_table(propagation, round_trip))
    return True


def _throughput_table(
    rows: list[auth.Target], results: dict[tuple[str, int], auth.LoadResult]
) -> Table:
    table = Table(
        "call", "1 replica req/s", "2 replicas req/s", "2/1", "p50 ms (1 → 2)", "errors",
        title="Throughput through nginx: 1 vs 2 replicas (ceiling 2x on 2 cores)",
    )  # fmt: skip
    for target in rows:
        one, two = results[(target.label, 1)], results[(target.label, 2)]
        table.add_row(
            target.label,
            f"{one.rps:,.0f}",
            f"{two.rps:,.0f}",
            f"{two.rps / one.rps:.2f}x" if one.rps else "-",
            f"{one.p50_ms:.2f} → {two.p50_ms:.2f}",
            str(one.errors + two.errors),
        )
    return table


def _revocation_table(propagation: list[float], round_trip: list[float]) -> Table:
    table = Table(
        "measure", "samples", "p50 ms", "p99 ms", "max ms",
        title="Revocation across replicas (revoked on 1, refused by 2)",
    )  # fmt: skip
    for label, seconds in (
        ("revoke answered → replica 2 refuses", propagation),
        ("baseline: one GET /api/v1/status to replica 2", round_trip),
    ):
        table.add_row(
            label,
            str(len(seconds)),
            f"{_quantile_ms(seconds, 0.5):.2f}",
            f"{_quantile_ms(seconds, 0.99):.2f}",
            f"{max(seconds) * 1000:.2f}",
        )
    table.caption = f"mean propagation {statistics.fmean(propagation) * 1000:.2f} ms"
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row")
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--revocations", type=int, default=100, help="keys revoked")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.revocations < 1:
        parser.error("--duration must be > 0, --concurrency and --revocations >= 1")
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    raise SystemExit(main())
