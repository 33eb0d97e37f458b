"""What the Platform API's hot paths cost.

1. `POST /api/data` (secret key + end-user token, quota tracked on an unlimited tier) against
   `GET /health` in the same run, over HTTP from a separate load process (target >= 0.5x).
2. Secret-key verification with a warm cache: the resolver's key lookup called in-process in
   a loop (target >= 200,000/s), beside a plain dict lookup of the same string.

Run `.venv/bin/python bench/platform_api.py` (flags: --duration, --concurrency). It reuses
bench/auth.py's server, load generator and table helpers. Prints one table; exit status 0
when both targets pass, 1 when one fails, 2 when the run could not happen.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

import auth
from tollhouse.catalog import service as catalog
from tollhouse.catalog.schemas import TierCreate
from tollhouse.config import load_settings, normalize_database_url, read_dev_secrets
from tollhouse.db import migrate
from tollhouse.db.engine import Database
from tollhouse.identity.caller import _UserLookup
from tollhouse.tenancy import service as tenancy
from tollhouse.wiring import identity_context

DATA_PATH = "/api/data"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TARGET_RATIO = 0.5
TARGET_IDEMPOTENT_RATIO = 0.3
TARGET_LOOKUPS = 200_000
LOOKUP_SECONDS = 2.0


class PostConnection(auth.RawConnection):
    """auth.RawConnection, sending `POST … Content-Length: 0` instead of GET for DATA_PATH."""

    def _request(self, path: str, headers: dict[str, str]) -> bytes:
        encoded = super()._request(path, headers)
        if path != DATA_PATH or encoded.startswith(b"POST"):
            return encoded
        head = encoded.replace(b"GET ", b"POST ", 1)[: -len(b"\r\n")]
        post = head + b"Content-Length: 0\r\n\r\n"
        assert self._encoded is not None
        self._encoded = (path, headers, post)
        return post


class IdempotentPostConnection(PostConnection):
    """A POST with a new `Idempotency-Key` on every request (each one is counted)."""

    _sent = 0

    def _request(self, path: str, headers: dict[str, str]) -> bytes:
        IdempotentPostConnection._sent += 1
        key = f"{id(self)}-{IdempotentPostConnection._sent}"
        self._encoded = None  # a different request every time
        return super()._request(path, {**headers, IDEMPOTENCY_HEADER: key})


def run_load(spec: auth.LoadSpec, target: auth.Target) -> auth.LoadResult:
    """Load-process entry: auth.run_load with POST-capable raw connections (and a fresh
    Idempotency-Key per request for targets that send one)."""
    idempotent = IDEMPOTENCY_HEADER in target.headers
    connection = IdempotentPostConnection if idempotent else PostConnection
    auth.RawConnection = connection  # type: ignore[misc]
    if idempotent:
        target = auth.Target(
            target.label,
            target.path,
            {k: v for k, v in target.headers.items() if k != IDEMPOTENCY_HEADER},
            target.per_connection,
        )
    return auth.run_load(spec, target)


# --- setup ------------------------------------------------------------------------------------


async def _make_project(data_dir: Path, url: str) -> str:
    """A project with an unlimited tier and a high rate limit; its secret key."""
    pepper = read_dev_secrets(data_dir, create=False)["tollhouse_secret_pepper"]
    database = Database(url)
    try:
        async with database.session() as session:
            platform = await tenancy.create_platform(session, "bench")
            made = await tenancy.create_project_with_keys(
                session, pepper, platform.id, name="bench", mode="test",
                rate_limit_per_minute=10_000_000,
            )  # fmt: skip
            await catalog.create_tier(session, made.project, TierCreate(name="free", limit=None))
    finally:
        await database.dispose()
    return made.secret.plaintext


def _end_user_headers(client: httpx.Client, secret: str, index: int) -> dict[str, str]:
    """A new end user's token (with the secret key): one end user per load connection."""
    auth_header = {"Authorization": f"Bearer {secret}"}
    response = client.post(
        "/api/customers", json={"email": f"bench-{index}@example.com"}, headers=auth_header
    )
    if response.status_code != 201:
        raise auth.BenchError(
            f"POST /api/customers answered {response.status_code}: {response.text}"
        )
    customer = response.json()["customer"]["id"]
    response = client.post(f"/api/customers/{customer}/token", headers=auth_header)
    if response.status_code != 200:
        raise auth.BenchError(f"token answered {response.status_code}: {response.text}")
    return {"X-Clerk-Token": response.json()["token"]}


# --- in-process key verification ---------------------------------------------------------------


async def _lookups_per_second(data_dir: Path, url: str, secret: str) -> tuple[float, float]:
    """(resolver key lookups/s with a warm cache, plain dict lookups/s of the same string)."""
    settings = load_settings(tollhouse_data_dir=data_dir, database_url=url, caller_cache_seconds=60)
    database = Database(settings.effective_database_url)
    try:
        lookup = _UserLookup(identity_context(settings, "unused"), database)
        if await lookup.key(secret) is None:  # warms the cache
            raise auth.BenchError("the bench's secret key did not resolve")
        count, deadline = 0, time.perf_counter() + LOOKUP_SECONDS
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            for _ in range(1000):
                await lookup.key(secret)
            count += 1000
        resolver = count / (time.perf_counter() - started)
    finally:
        await database.dispose()
    table: dict[str, Any] = {secret: object()}
    count, deadline = 0, time.perf_counter() + LOOKUP_SECONDS
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(1000):
            table.get(secret)
        count += 1000
    return resolver, count / (time.perf_counter() - started)


# --- main -------------------------------------------------------------------------------------


def _cpu_ms(result: auth.LoadResult) -> str:
    """Server CPU per answered request (all workers), the figure that noise moves least."""
    if result.server_cpu is None or not result.ok:
        return ""
    return f"{result.server_cpu * result.seconds / result.ok * 1000:.2f}"


def _table(
    results: list[auth.LoadResult],
    resolver: float,
    plain: float,
    args: argparse.Namespace,
    split: list[float],
) -> tuple[Table, bool]:
    health = [r for r in results if r.label.startswith("GET /health")]
    health_rps = sum(r.rps for r in health) / len(health)
    data, idempotent = results[1], results[2]
    ratios = {id(r): r.rps / health_rps if health_rps else 0.0 for r in results}
    targets = {id(data): TARGET_RATIO, id(idempotent): TARGET_IDEMPOTENT_RATIO}
    passed = {
        key: ratios[key] >= target and not r.errors
        for r in (data, idempotent)
        for key, target in [(id(r), targets[id(r)])]
    }
    lookup_ok = resolver >= TARGET_LOOKUPS
    backend = "PostgreSQL" if args.database_url else "SQLite"
    table = Table(
        "measure", "per second", "p50 ms", "p99 ms", "errors", "server CPU", "CPU ms/req",
        "vs baseline", "target", "verdict",
        title="Platform API: POST /api/data vs GET /health; secret-key lookups vs a dict",
        caption=(
            f"HTTP: `tollhouse serve --workers {args.workers}`, {backend}, {args.concurrency} "
            f"raw keep-alive connections, {args.duration:g} s per row; baseline = mean of the "
            f"/health runs; server CPU = share of one core, all workers.\n"
            f"Lookups: in-process `_UserLookup.key` (warm cache) for {LOOKUP_SECONDS:g} s."
        ),
        caption_justify="left",
    )  # fmt: skip
    for result in results:
        target = targets.get(id(result))
        table.add_row(
            result.label,
            f"{result.rps:,.0f}",
            f"{result.p50_ms:.2f}",
            f"{result.p99_ms:.2f}",
            str(result.errors),
            "" if result.server_cpu is None else f"{result.server_cpu:.0%}",
            _cpu_ms(result),
            "baseline" if result in health else f"{ratios[id(result)]:.2f}x",
            f">= {target}x" if target else "",
            ("PASS" if passed[id(result)] else "FAIL") if target else "",
        )
    table.add_row("dict.get(secret)", f"{plain:,.0f}", "", "", "", "", "", "baseline", "", "")
    table.add_row(
        "secret-key lookup (warm)", f"{resolver:,.0f}", "", "", "", "", "",
        f"{resolver / plain:.3f}x", f">= {TARGET_LOOKUPS:,}/s", "PASS" if lookup_ok else "FAIL",
    )  # fmt: skip
    if split:
        shares = ", ".join(f"{share:.0%}" for share in split)
        table.caption = f"{table.caption}\nWorkers' shares of the server CPU (/api/data): {shares}."
    for result in results:
        if result.first_error:
            table.caption = f"{table.caption}\nfirst error ({result.label}): {result.first_error}"
    return table, all(passed.values()) and lookup_ok


def _wait_for_listeners(base_url: str, count: int, timeout: float = 120.0) -> None:
    """Every worker listening (SO_REUSEPORT: one socket per worker in /proc/net/tcp)."""
    port = f"{int(base_url.rsplit(':', 1)[1]):04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        listening = [r for r in rows if r.split()[1].endswith(f":{port}") and r.split()[3] == "0A"]
        if len(listening) >= count:
            return
        time.sleep(0.2)
    raise auth.BenchError(f"{count} workers were not all listening after {timeout:.0f} s")


def _measure_split(
    pool: ProcessPoolExecutor, spec: auth.LoadSpec, target: auth.Target
) -> tuple[auth.LoadResult, list[float]]:
    """One load run, and each worker's share of the server CPU it cost."""
    workers = [pid for pid in auth.child_pids(spec.server_pid) if _is_worker(pid)]
    before = {pid: auth.process_cpu_seconds(pid) or 0.0 for pid in workers}
    result = pool.submit(run_load, spec, target).result()
    used = [max((auth.process_cpu_seconds(pid) or 0.0) - before[pid], 0.0) for pid in workers]
    total = sum(used)
    return result, [u / total for u in used] if total else []


def _is_worker(pid: int) -> bool:
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run(args: argparse.Namespace, out: Console) -> bool:
    with ExitStack() as stack:
        issuer = stack.enter_context(auth.running_issuer(auth.ISSUER, auth.AUDIENCE, auth.JWKS_KID))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-bench-")))
        url = f"sqlite+aiosqlite:///{data_dir / 'tollhouse.db'}"
        env_lines = [f"MAX_CONCURRENT_REQUESTS={args.max_in_flight}"]
        if args.database_url:
            # The server runs in data_dir and reads its .env: the one way to point it elsewhere
            # without changing bench/auth.py. The database must be empty or ours to fill.
            url = normalize_database_url(args.database_url)
            migrate.upgrade(url)
            env_lines.append(f"DATABASE_URL={args.database_url}")
        (data_dir / ".env").write_text("\n".join(env_lines) + "\n")
        server = stack.enter_context(auth.tollhouse_server(data_dir, issuer, args.workers))
        if args.workers > 1:
            _wait_for_listeners(server.base_url, args.workers)
        secret = asyncio.run(_make_project(data_dir, url))
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            secret_header = {"Authorization": f"Bearer {secret}"}
            end_users = tuple(
                _end_user_headers(client, secret, index)
                for index in range(max(args.concurrency, args.overload_connections))
            )
            check = client.post(DATA_PATH, headers={**secret_header, **end_users[0]})
            if check.status_code != 200:
                raise auth.BenchError(
                    f"POST {DATA_PATH} answered {check.status_code}: {check.text}"
                )
        data = auth.Target(
            "POST /api/data (SK + token)", DATA_PATH, secret_header, per_connection=end_users
        )
        targets = [
            auth.Target("GET /health", auth.HEALTH_PATH),
            data,
            auth.Target(
                "POST /api/data + Idempotency-Key",
                DATA_PATH,
                {**secret_header, IDEMPOTENCY_HEADER: "per-request"},
                per_connection=end_users,
            ),
            auth.Target("GET /health (again)", auth.HEALTH_PATH),
        ]
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        )
        spec = auth.LoadSpec(server.base_url, args.duration, args.concurrency, "raw", server.pid)
        results = [pool.submit(run_load, spec, targets[0]).result()]
        measured, split = _measure_split(pool, spec, data)
        results.append(measured)
        results += [pool.submit(run_load, spec, target).result() for target in targets[2:]]
        if args.overload_connections:
            overload = auth.LoadSpec(
                server.base_url, args.duration, args.overload_connections, "raw", server.pid
            )
            label = f"POST /api/data, {args.overload_connections} connections (503s = errors)"
            past_capacity = dataclasses.replace(data, label=label)
            results.append(pool.submit(run_load, overload, past_capacity).result())
        resolver, plain = asyncio.run(_lookups_per_second(data_dir, url, secret))
    table, passed = _table(results, resolver, plain, args, split)
    out.print(table)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per row")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to run on (default: SQLite)"
    )
    parser.add_argument("--workers", type=int, default=1, help="`tollhouse serve --workers`")
    parser.add_argument(
        "--max-in-flight", type=int, default=0, help="MAX_CONCURRENT_REQUESTS (0: no bound)"
    )
    parser.add_argument(
        "--overload-connections",
        type=int,
        default=0,
        help="add a row with this many connections (past capacity; 0: none)",
    )
    args = parser.parse_args(argv)
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    sys.exit(main())
