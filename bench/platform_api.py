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
TARGET_RATIO = 0.5
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


def run_load(spec: auth.LoadSpec, target: auth.Target) -> auth.LoadResult:
    """Load-process entry: auth.run_load with POST-capable raw connections."""
    auth.RawConnection = PostConnection  # type: ignore[misc]
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


def _table(
    results: list[auth.LoadResult], resolver: float, plain: float, args: argparse.Namespace
) -> tuple[Table, bool]:
    health_rps = (results[0].rps + results[2].rps) / 2
    data = results[1]
    ratio = data.rps / health_rps if health_rps else 0.0
    http_ok = ratio >= TARGET_RATIO and not data.errors
    lookup_ok = resolver >= TARGET_LOOKUPS
    backend = "PostgreSQL" if args.database_url else "SQLite"
    table = Table(
        "measure", "per second", "p50 ms", "p99 ms", "errors", "server CPU", "vs baseline",
        "target", "verdict",
        title="Platform API: POST /api/data vs GET /health; secret-key lookups vs a dict",
        caption=(
            f"HTTP: `tollhouse serve --workers 1`, {backend}, {args.concurrency} raw keep-alive "
            f"connections, {args.duration:g} s per row; baseline = mean of two /health runs.\n"
            f"Lookups: in-process `_UserLookup.key` (warm cache) for {LOOKUP_SECONDS:g} s."
        ),
        caption_justify="left",
    )  # fmt: skip
    for result in results:
        is_data = result is data
        table.add_row(
            result.label,
            f"{result.rps:,.0f}",
            f"{result.p50_ms:.2f}",
            f"{result.p99_ms:.2f}",
            str(result.errors),
            "" if result.server_cpu is None else f"{result.server_cpu:.0%}",
            f"{ratio:.2f}x" if is_data else "baseline",
            f">= {TARGET_RATIO}x" if is_data else "",
            ("PASS" if http_ok else "FAIL") if is_data else "",
        )
    table.add_row("dict.get(secret)", f"{plain:,.0f}", "", "", "", "", "baseline", "", "")
    table.add_row(
        "secret-key lookup (warm)",
        f"{resolver:,.0f}",
        "",
        "",
        "",
        "",
        f"{resolver / plain:.3f}x",
        f">= {TARGET_LOOKUPS:,}/s",
        "PASS" if lookup_ok else "FAIL",
    )
    if data.first_error:
        table.caption = f"{table.caption}\nfirst error: {data.first_error}"
    return table, http_ok and lookup_ok


def run(args: argparse.Namespace, out: Console) -> bool:
    with ExitStack() as stack:
        issuer = stack.enter_context(auth.running_issuer(auth.ISSUER, auth.AUDIENCE, auth.JWKS_KID))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-bench-")))
        url = f"sqlite+aiosqlite:///{data_dir / 'tollhouse.db'}"
        if args.database_url:
            # The server runs in data_dir and reads its .env: the one way to point it elsewhere
            # without changing bench/auth.py. The database must be empty or ours to fill.
            url = normalize_database_url(args.database_url)
            migrate.upgrade(url)
            (data_dir / ".env").write_text(f"DATABASE_URL={args.database_url}\n")
        server = stack.enter_context(auth.tollhouse_server(data_dir, issuer))
        secret = asyncio.run(_make_project(data_dir, url))
        with httpx.Client(base_url=server.base_url, timeout=10.0) as client:
            secret_header = {"Authorization": f"Bearer {secret}"}
            end_users = tuple(
                _end_user_headers(client, secret, index) for index in range(args.concurrency)
            )
            check = client.post(DATA_PATH, headers={**secret_header, **end_users[0]})
            if check.status_code != 200:
                raise auth.BenchError(
                    f"POST {DATA_PATH} answered {check.status_code}: {check.text}"
                )
        targets = [
            auth.Target("GET /health", auth.HEALTH_PATH),
            auth.Target(
                "POST /api/data (SK + token)", DATA_PATH, secret_header, per_connection=end_users
            ),
            auth.Target("GET /health (again)", auth.HEALTH_PATH),
        ]
        pool = stack.enter_context(
            ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        )
        spec = auth.LoadSpec(server.base_url, args.duration, args.concurrency, "raw", server.pid)
        results = [pool.submit(run_load, spec, target).result() for target in targets]
        resolver, plain = asyncio.run(_lookups_per_second(data_dir, url, secret))
    table, passed = _table(results, resolver, plain, args)
    out.print(table)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per row")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to run on (default: SQLite)"
    )
    args = parser.parse_args(argv)
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    sys.exit(main())
