"""CPU per request in-process: the app called as ASGI in a loop, no server, no load process.

The figure that a loaded machine moves least (`time.process_time`: only this process's CPU),
for the hot paths of issue 14 side by side: `GET /health`, `POST /api/data` (secret key +
end-user token, unlimited tier), the same with a new `Idempotency-Key` each call, and
`GET /gw/{project}/up/ping` forwarded to a loopback upstream in another process (whose CPU is
not counted). Run `.venv/bin/python bench/inprocess.py` (flags: --requests, --database-url,
--profile LABEL: cProfile, on this thread's CPU clock, of the path whose label has LABEL).
Exit status 0, 2 no run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

import auth
from platform_api import _make_project
from proxy import PREFIX, _register_route, upstream_server
from reference_apps import PING_PATH
from tollhouse.app import create_app
from tollhouse.config import Settings, load_settings, normalize_database_url
from tollhouse.db import migrate

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _settings(data_dir: Path, url: str) -> Settings:
    """Development mode (a loopback upstream is allowed), the dev secrets made in data_dir."""
    return load_settings(
        tollhouse_env="development",
        tollhouse_data_dir=data_dir,
        database_url=url,
        log_level="WARNING",
        caller_cache_seconds=60,
    )


class Call:
    """One prepared request, sent to the app directly; the status it answered."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.method, self.path, self.body = method, path, body
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.headers.append((b"host", b"bench.local"))
        if body or method == "POST":
            self.headers.append((b"content-length", str(len(body)).encode()))

    async def __call__(self, app: ASGIApp, extra: Sequence[tuple[bytes, bytes]] = ()) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": self.method, "scheme": "http", "path": self.path,
            "raw_path": self.path.encode(), "query_string": b"", "root_path": "",
            "headers": [*self.headers, *extra], "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status


_KEYS = itertools.count()


async def _measure(app: ASGIApp, call: Call, requests: int, idempotent: bool) -> float:
    """ms of this process's CPU per request (a new Idempotency-Key for every idempotent one)."""
    for _ in range(20):  # warm-up: caches, pools, leases
        await call(app, [(b"idempotency-key", f"k-{next(_KEYS)}".encode())] if idempotent else [])
    started = time.process_time()
    for _ in range(requests):
        extra = [(b"idempotency-key", f"k-{next(_KEYS)}".encode())] if idempotent else []
        # A status other than 200 stops the bench: a broken path must not pass as a fast one.
        status = await call(app, extra)
        if status != 200:
            raise auth.BenchError(f"{call.method} {call.path} answered {status}")
    return (time.process_time() - started) / requests * 1000


async def _run(args: argparse.Namespace, data_dir: Path, url: str, upstream_url: str) -> Table:
    app = create_app(_settings(data_dir, url))
    secret = await _make_project(data_dir, url)
    project_id = await _register_route(data_dir, url, upstream_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench.local") as client:
            auth_header = {"Authorization": f"Bearer {secret}"}
            made = await client.post(
                "/api/customers", json={"email": "cpu@example.com"}, headers=auth_header
            )
            customer = made.json()["customer"]["id"]
            token = await client.post(f"/api/customers/{customer}/token", headers=auth_header)
            user = {**auth_header, "X-Clerk-Token": token.json()["token"]}
        calls = {
            "GET /health": (Call("GET", "/health", {}), False),
            "POST /api/data": (Call("POST", "/api/data", user), False),
            "POST /api/data + Idempotency-Key": (Call("POST", "/api/data", user), True),
            "GET /gw/…/ping": (Call("GET", f"/gw/{project_id}/{PREFIX}{PING_PATH}", user), False),
        }
        table = Table("path", "CPU ms/request", "vs /health", title="In-process CPU per request")
        health = 0.0
        for label, (call, idempotent) in calls.items():
            if args.profile and args.profile in label:
                profile = cProfile.Profile(time.thread_time)
                profile.enable()
                await _measure(app, call, args.requests, idempotent)
                profile.disable()
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
            cost = await _measure(app, call, args.requests, idempotent)
            health = health or cost
            table.add_row(label, f"{cost:.3f}", f"{health / cost:.2f}x")
    return table


def run(args: argparse.Namespace, out: Console) -> bool:
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollhouse-cpu-")))
        url = f"sqlite+aiosqlite:///{data_dir / 'tollhouse.db'}"
        if args.database_url:
            url = normalize_database_url(args.database_url)
        migrate.upgrade(url)
        up = stack.enter_context(upstream_server(data_dir))
        out.print(asyncio.run(_run(args, data_dir, url, up.base_url)))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--profile", help="cProfile the path whose label contains this")
    args = parser.parse_args(argv)
    return auth.run_main(lambda out: run(args, out))


if __name__ == "__main__":
    sys.exit(main())
