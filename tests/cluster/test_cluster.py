"""The scaled topology proven as a whole: `make cluster`'s nginx in front of three
`tollhouse serve` replicas on PostgreSQL and Redis, driven only over HTTP.

Each proof is bounded in time; waits are bounded polls on what the cluster answers.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from cluster_support import BILLING, Cluster, assert_audit_clean, funded_user
from test_console import API, PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

PROPAGATION_SECONDS = 1.0


async def test_200_spends_of_1_on_100_over_all_replicas_take_exactly_100(
    running: Cluster,
) -> None:
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as lb:
        user = await funded_user(lb, "spender", 100)
        # Other proofs share the cluster: count what this one adds to each replica's series.
        before = [await _spends_served(replica) for replica in running.replicas]

        async def spend() -> int:
            response = await lb.post(
                "/internal/credits/spend",
                json={"user_id": user, "cost": 1},
                headers=BILLING,
            )
            return response.status_code

        statuses = await asyncio.gather(*(spend() for _ in range(200)))
        assert statuses.count(200) == 100
        assert all(status == 402 for status in statuses if status != 200), set(statuses)
        await assert_audit_clean(lb)
    after = [await _spends_served(replica) for replica in running.replicas]
    served = [b - a for a, b in zip(before, after, strict=True)]
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
