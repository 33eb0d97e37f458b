"""The running cluster the proofs in tests/cluster/ share (one per session), and the small
HTTP helpers they have in common: a funded user, a balance, the ledger audit.

Everything here talks to the cluster over HTTP, as a client would; the exceptions are
`Cluster.ledger_keys` and `Cluster.fetchval`, which read what the cluster wrote (each spend
in the ledger once, the usage counters) to check it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from support import ADMIN_KEY, SERVICE
from tollhouse import cluster

CONSOLE = "/console/api/v1"
PASSWORD = "correct horse battery"
BILLING_KEY = "cluster-billing-key-0123456789abcdefghijkl"
BILLING = {"X-Service-Key": BILLING_KEY}
ADMIN = {"X-Admin-Key": ADMIN_KEY}
WEBHOOK_SECRET = "whsec_cluster_0123456789"
PACK_PRICE = "price_cluster_pack_100"
PACK: dict[str, Any] = {
    "id": "pack_100",
    "name": "100 credits",
    "credits": 100,
    "price_cents": 499,
    "stripe_price_id": PACK_PRICE,
}
# What a drained replica may take to exit: DRAIN_TIMEOUT_SECONDS plus its shutdown.
DRAIN_SECONDS = 10.0


@dataclass
class Cluster:
    url: str  # nginx
    replicas: tuple[str, ...]
    ports: tuple[int, ...]
    run_dir: Path
    env: dict[str, str]
    database_url: str  # asyncpg form, for the ledger checks
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def kill(self, index: int) -> None:
        """kill -9 replica `index` (0-based): no drain, its in-flight requests are cut."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=DRAIN_SECONDS)

    def drain(self, index: int) -> int:
        """SIGTERM replica `index`; returns its exit code once it has drained and exited."""
        process = self.processes[index]
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=DRAIN_SECONDS)

    def restart(self, index: int) -> None:
        """Start replica `index` again on its port; returns once it answers ready."""
        assert self.processes[index].poll() is not None, "the replica is still running"
        self.processes[index] = cluster.start_replica(
            self.run_dir, index + 1, self.ports[index], self.env
        )

    async def ledger_keys(self, user_id: str) -> list[str]:
        """The idempotency keys of `user_id`'s ledger rows (one per move that happened)."""
        rows = await self._fetch(
            "SELECT t.idempotency_key FROM credit_transactions t"
            " JOIN credit_accounts a ON a.id = t.account_id WHERE a.user_id = $1",
            uuid.UUID(user_id),
        )
        return [row["idempotency_key"] for row in rows if row["idempotency_key"]]

    async def fetchval(self, query: str, *args: Any) -> Any:
        """One value from the cluster's database (what a proof checks was written)."""
        [row] = await self._fetch(query, *args)
        return row[0]

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        connection = await asyncpg.connect(self.database_url)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()


async def funded_user(lb: httpx.AsyncClient, external_id: str, balance: int) -> str:
    """A user (resolved by the service key) whose balance is exactly `balance`."""
    resolved = await lb.post(
        "/api/v1/users/resolve", json={"external_id": external_id}, headers=SERVICE
    )
    assert resolved.status_code == 200, resolved.text
    user: str = resolved.json()["user_id"]
    current = await balance_of(lb, user)  # the signup grant, if any
    if balance > current:
        moved = await lb.post(
            "/api/v1/credits/admin/grant",
            json={"user_id": user, "amount": balance - current},
            headers=ADMIN,
        )
    elif balance < current:
        moved = await lb.post(
            "/internal/credits/spend",
            json={"user_id": user, "cost": current - balance},
            headers=BILLING,
        )
    if balance != current:
        assert moved.status_code == 200, moved.text
    assert await balance_of(lb, user) == balance
    return user


async def balance_of(client: httpx.AsyncClient, user: str) -> int:
    check = await client.get(
        "/internal/credits/check", params={"user_id": user, "cost": 0}, headers=BILLING
    )
    assert check.status_code == 200, check.text
    return int(check.json()["balance"])


async def assert_audit_clean(client: httpx.AsyncClient) -> None:
    audit = await client.get("/api/v1/credits/admin/audit", headers=ADMIN)
    assert audit.status_code == 200, audit.text
    assert audit.json()["ok"] is True, audit.json()


async def poll(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    """Await `check()` until it returns something truthy, for at most `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.05)  # a bounded poll's pace, not a synchronisation


@dataclass(frozen=True)
class PlatformProject:
    """A developer's Platform-API project made through the console, over HTTP."""

    id: str
    secret: dict[str, str]
    publishable_key: str

    async def end_user(self, client: httpx.AsyncClient, email: str, plan: str) -> dict[str, str]:
        """Headers of a new end user on `plan`, calling with the publishable key."""
        created = await client.post(
            "/api/customers", json={"email": email, "plan": plan}, headers=self.secret
        )
        assert created.status_code == 201, created.text
        customer = created.json()["customer"]["id"]
        token = await client.post(f"/api/customers/{customer}/token", headers=self.secret)
        assert token.status_code == 200, token.text
        return {"X-Publishable-Key": self.publishable_key, "X-Clerk-Token": token.json()["token"]}


async def platform_project(
    client: httpx.AsyncClient, tier: dict[str, Any], rate_limit_per_minute: int
) -> PlatformProject:
    """A new developer's SaaS project with one tier and its rate limit, set before any of its
    keys is used (so no replica has a copy of the old limit)."""
    signup = await client.post(
        f"{CONSOLE}/auth/signup",
        json={"email": f"{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD},
    )
    assert signup.status_code == 201, signup.text
    client.cookies.clear()
    auth = {"Cookie": f"tollhouse_session={signup.json()['token']}"}
    created = await client.post(
        f"{CONSOLE}/projects", json={"name": "Scaled", "type": "saas"}, headers=auth
    )
    assert created.status_code == 201, created.text
    project = created.json()["project"]["id"]
    patched = await client.patch(
        f"{CONSOLE}/projects/{project}",
        json={"rate_limit_per_minute": rate_limit_per_minute},
        headers=auth,
    )
    assert patched.status_code == 200, patched.text
    made = await client.post(f"{CONSOLE}/projects/{project}/tiers", json=tier, headers=auth)
    assert made.status_code == 201, made.text
    return PlatformProject(
        project,
        {"Authorization": f"Bearer {created.json()['secret_key']}"},
        created.json()["publishable_key"],
    )


# --- a retrying client under load ----------------------------------------------------------

# Answers a client retries with the same Idempotency-Key: nginx's "the replica went away"
# (502/504), a draining or unready replica (503), a duplicate still in flight (409).
RETRYABLE = frozenset({409, 502, 503, 504})
RETRY_FOR_SECONDS = 30.0
RETRY_PAUSE_SECONDS = 0.05  # a client's backoff between tries


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: the connection failed


@dataclass
class SpendLoad:
    """Clients spending 1 credit at a time through nginx, each spend under an
    Idempotency-Key of its own, retried with that key until it is answered 200."""

    client: httpx.AsyncClient
    user: str
    first: dict[str, Attempt] = field(default_factory=dict)  # each key's first try
    settled: dict[str, int] = field(default_factory=dict)  # each key's last answer
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _try(self, key: str) -> Attempt:
        started = time.monotonic()
        try:
            response = await self.client.post(
                "/internal/credits/spend",
                json={"user_id": self.user, "cost": 1},
                headers={**BILLING, "Idempotency-Key": key},
            )
            status: int | None = response.status_code
        except httpx.TransportError:
            status = None
        return Attempt(started, time.monotonic(), status)

    async def spend(self, key: str) -> None:
        attempt = self.first[key] = await self._try(key)
        deadline = attempt.ended + RETRY_FOR_SECONDS
        while (attempt.status is None or attempt.status in RETRYABLE) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            attempt = await self._try(key)
        self.settled[key] = attempt.status or 0

    async def run(self, clients: int, keys: int | None = None) -> None:
        """`clients` at once until `keys` spends are settled (or, without `keys`, until
        `stop` is set)."""
        budget = iter(range(keys)) if keys is not None else None

        async def one_client() -> None:
            while not self.stop.is_set():
                if budget is not None and next(budget, None) is None:
                    return
                await self.spend(uuid.uuid4().hex)

        await asyncio.gather(*(one_client() for _ in range(clients)))

    async def settled_at_least(self, count: int, within: float) -> None:
        async def enough() -> bool:
            return len(self.settled) >= count

        await poll(enough, within, f"{count} spends settled")

    def failed_first(self) -> list[Attempt]:
        return [a for a in self.first.values() if a.status != 200]
