"""The scaled topology proven as a whole: `make cluster`'s nginx in front of three
`tollhouse serve` replicas on PostgreSQL and Redis, driven only over HTTP.

Each proof is bounded in time; waits are bounded polls on what the cluster answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from support import ADMIN_KEY, JWT_SECRET, PEPPER, SERVICE, SERVICE_KEY, free_port
from test_console import API, PASSWORD
from tollhouse import cluster

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

BILLING_KEY = "cluster-billing-key-0123456789abcdefghijkl"
# Long enough that a refusal inside the 1 s window can only come from the invalidation.
CACHE_SECONDS = "60"
PROPAGATION_SECONDS = 1.0


@dataclass(frozen=True)
class Cluster:
    url: str  # nginx
    replicas: tuple[str, ...]


def _requirements() -> tuple[str, str]:
    database = os.environ.get("TOLLHOUSE_TEST_DATABASE_URL")
    redis = os.environ.get("TOLLHOUSE_TEST_REDIS_URL")
    nginx = shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
    if not database or not redis or not nginx:
        pytest.skip("the cluster needs PostgreSQL, Redis (TOLLHOUSE_TEST_*_URL) and nginx")
    return database, redis


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    database, redis = _requirements()
    name = f"tollhouse_cluster_{uuid.uuid4().hex[:12]}"
    url = make_url(database).set(database=name).render_as_string(hide_password=False)
    run = f"tollhouse:cluster-test:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "TOLLHOUSE_ENV": "development",
        "DATABASE_URL": url,
        "REDIS_URL": redis,
        "RATE_LIMIT_KEY_PREFIX": f"{run}rl:",
        "EVENTS_KEY_PREFIX": f"{run}events:",
        "INVALIDATION_CHANNEL": f"{run}invalidate",
        "CALLER_CACHE_SECONDS": CACHE_SECONDS,
        "ADMIN_API_KEY": ADMIN_KEY,
        "FLASH_SERVICE_KEY": SERVICE_KEY,
        "BILLING_API_KEY": BILLING_KEY,
        "JWT_SECRET_KEY": JWT_SECRET,
        "TOLLHOUSE_SECRET_PEPPER": PEPPER,
        "LOG_LEVEL": "WARNING",
    }
    run_dir = tmp_path_factory.mktemp("cluster")
    port, replica_ports = free_port(), [free_port() for _ in range(3)]
    try:
        cluster.start(run_dir, "127.0.0.1", port, replica_ports, env)
        yield Cluster(
            f"http://127.0.0.1:{port}",
            tuple(f"http://127.0.0.1:{p}" for p in replica_ports),
        )
    finally:
        cluster.stop(run_dir)
        asyncio.run(_drop_database(database, name))


async def _drop_database(server_url: str, name: str) -> None:
    server = make_url(server_url).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def test_200_spends_of_1_on_100_over_all_replicas_take_exactly_100(
    running: Cluster,
) -> None:
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as lb:
        resolved = await lb.post(
            "/api/v1/users/resolve", json={"external_id": "spender"}, headers=SERVICE
        )
        assert resolved.status_code == 200, resolved.text
        user = resolved.json()["user_id"]
        admin = {"X-Admin-Key": ADMIN_KEY}
        billing = {"X-Service-Key": BILLING_KEY}
        check = await lb.get(
            "/internal/credits/check", params={"user_id": user, "cost": 0}, headers=billing
        )
        assert check.status_code == 200, check.text  # the signup grant, if any
        granted = await lb.post(
            "/api/v1/credits/admin/grant",
            json={"user_id": user, "amount": 100 - check.json()["balance"]},
            headers=admin,
        )
        assert granted.status_code == 200, granted.text
        assert granted.json()["balance"] == 100

        async def spend() -> int:
            response = await lb.post(
                "/internal/credits/spend",
                json={"user_id": user, "cost": 1},
                headers=billing,
            )
            return response.status_code

        statuses = await asyncio.gather(*(spend() for _ in range(200)))
        assert statuses.count(200) == 100
        assert all(status == 402 for status in statuses if status != 200), set(statuses)
        audit = (await lb.get("/api/v1/credits/admin/audit", headers=admin)).json()
        assert audit["ok"] is True, audit
    served = [await _spends_served(replica) for replica in running.replicas]
    assert sum(served) == 200
    assert all(count > 0 for count in served), served  # spread over every replica


async def _spends_served(replica: str) -> int:
    async with httpx.AsyncClient(base_url=replica) as client:
        text = (await client.get("/metrics")).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tollhouse_http_requests_total{")
        and 'route="/internal/credits/spend"' in line
    )


async def test_a_key_revoked_on_one_replica_is_refused_by_the_others_within_a_second(
    running: Cluster,
) -> None:
    a, b, c = (httpx.AsyncClient(base_url=url, timeout=10) for url in running.replicas)
    try:
        signup = await a.post(
            f"{API}/auth/signup",
            json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        )
        assert signup.status_code == 201, signup.text
        auth = {"Cookie": f"tollhouse_session={signup.json()['token']}"}
        a.cookies.clear()
        created = await a.post(
            f"{API}/projects", json={"name": "Scaled", "type": "saas"}, headers=auth
        )
        assert created.status_code == 201, created.text
        keys_url = f"{API}/projects/{created.json()['project']['id']}/keys"
        keys = (await a.get(keys_url, headers=auth)).json()["keys"]
        [key_id] = [k["id"] for k in keys if k["kind"] == "secret"]
        secret = {"Authorization": f"Bearer {created.json()['secret_key']}"}
        for replica in (b, c):  # each now trusts its cached copy for 60 s
            assert (await replica.get("/api/v1/status", headers=secret)).status_code == 200

        revoked = await a.post(f"{keys_url}/{key_id}/revoke", headers=auth)
        assert revoked.status_code == 200, revoked.text
        revoked_at = time.monotonic()
        for replica in (b, c):
            while (await replica.get("/api/v1/status", headers=secret)).status_code != 401:
                assert time.monotonic() - revoked_at < PROPAGATION_SECONDS
        assert time.monotonic() - revoked_at < PROPAGATION_SECONDS
    finally:
        for client in (a, b, c):
            await client.aclose()
