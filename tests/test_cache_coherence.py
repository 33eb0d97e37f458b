"""Cache coherence across replicas: two apps on one database and one Redis.

A change made through replica A (a key revoked, a customer deleted) is refused or forgotten
by replica B as soon as B has the invalidation message, although B's cached copy would
otherwise be trusted for CALLER_CACHE_SECONDS (set long here, so only the message can
explain it).
Without Redis, B keeps its copy until the TTL: the fallback this replaces.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from platform_fixtures import create_customer, new_project, user_token
from support import PEPPER, ClientFactory, app_of, assert_error
from test_console import API, create_project, signup
from tollhouse.cli import app as cli
from tollhouse.config import load_settings
from tollhouse.kit.invalidation import Invalidation

pytestmark = pytest.mark.anyio

REDIS_URL_ENV = "TOLLHOUSE_TEST_REDIS_URL"
# Long enough that no test could pass on the TTL: only the message drops B's copy.
CACHE_SECONDS = 60
# The bound on propagation; a bounded wait, not a sleep.
WITHIN_SECONDS = 1.0


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(f"cache coherence on Redis skipped: {REDIS_URL_ENV} is not set")
    return url


async def replicas(
    make_client: ClientFactory, redis_url: str | None
) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    # A channel of this test's own: other test runs share the Redis server.
    run = uuid.uuid4().hex
    channel = f"tollhouse:test:invalidate:{run}"
    settings = {
        "redis_url": redis_url,
        "invalidation_channel": channel,
        # Signups are rate limited per address: a bucket of this test's own.
        "rate_limit_key_prefix": f"tollhouse:test:rl:{run}:",
        "caller_cache_seconds": CACHE_SECONDS,
    }
    return await make_client(**settings), await make_client(**settings)


def invalidation(client: httpx.AsyncClient) -> Invalidation:
    found = app_of(client).state.identity.invalidation
    assert isinstance(found, Invalidation)
    return found


async def changed_on(client: httpx.AsyncClient, heard_before: int) -> None:
    """Returns when `client`'s replica has applied a message sent after `heard_before`."""
    await asyncio.wait_for(invalidation(client).received_at_least(heard_before + 1), WITHIN_SECONDS)


async def status(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/api/v1/status", headers=headers)


async def project_key(
    a: httpx.AsyncClient,
) -> tuple[dict[str, str], Callable[[], Awaitable[None]]]:
    """A new project's secret key (as headers) and how to revoke it in the console on `a`."""
    secret, key_id, keys_url, auth = await _secret_key(a)

    async def revoke() -> None:
        revoked = await a.post(f"{keys_url}/{key_id}/revoke", headers=auth)
        assert revoked.status_code == 200, revoked.text

    return secret, revoke


async def _secret_key(a: httpx.AsyncClient) -> tuple[dict[str, str], str, str, dict[str, str]]:
    """A new project's secret key (as headers), its id, its project's keys URL, the
    developer's session."""
    auth = await signup(a)
    created = await create_project(a, auth)
    keys_url = f"{API}/projects/{created['project']['id']}/keys"
    [key_id] = [
        k["id"]
        for k in (await a.get(keys_url, headers=auth)).json()["keys"]
        if k["kind"] == "secret"
    ]
    return {"Authorization": f"Bearer {created['secret_key']}"}, key_id, keys_url, auth


async def test_a_key_revoked_on_one_replica_is_refused_by_another(
    make_client: ClientFactory, redis_url: str
) -> None:
    a, b = await replicas(make_client, redis_url)
    secret, revoke = await project_key(a)
    assert (await status(b, secret)).status_code == 200  # B now trusts its cached copy
    plaintext = secret["Authorization"].removeprefix("Bearer ")
    assert app_of(b).state.identity.key_cache.get(plaintext) is not None
    heard = invalidation(b).received

    await revoke()
    await changed_on(b, heard)

    assert app_of(b).state.identity.key_cache.get(plaintext) is None
    assert_error(await status(b, secret), 401, "invalid_api_key")
    assert_error(await status(a, secret), 401, "invalid_api_key")


@pytest.mark.parametrize("command", ["revoke", "roll"])
async def test_a_key_revoked_or_rolled_with_the_cli_is_dropped_by_running_replicas(
    make_client: ClientFactory,
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    a, b = await replicas(make_client, redis_url)
    secret, key_id, _, _ = await _secret_key(a)
    for replica in (a, b):  # each now trusts its cached copy for CALLER_CACHE_SECONDS
        assert (await status(replica, secret)).status_code == 200
    heard = [invalidation(replica).received for replica in (a, b)]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOLLHOUSE_SECRET_PEPPER", PEPPER)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("INVALIDATION_CHANNEL", invalidation(b).channel)
    load_settings(_env_file=None)  # the home's secrets, as `serve` makes them
    # A roll with no grace ends the old key now: the same drop as a revoke.
    args = ["keys", command, key_id, *(["--grace-hours", "0"] if command == "roll" else [])]

    result = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--json"])

    assert result.exit_code == 0, result.output
    for replica, before in zip((a, b), heard, strict=True):
        await changed_on(replica, before)
        assert_error(await status(replica, secret), 401, "invalid_api_key")


async def test_a_customer_deleted_on_one_replica_is_forgotten_by_another(
    make_client: ClientFactory, redis_url: str
) -> None:
    a, b = await replicas(make_client, redis_url)
    keys = await new_project(a)
    customer = await create_customer(a, keys, "gone@example.com", plan="free")
    as_customer = {**keys.publishable, "X-Clerk-Token": await user_token(a, keys, customer["id"])}
    answered = await status(b, as_customer)
    assert answered.status_code == 200, answered.text
    erased_user = answered.json()["caller"]["user_id"]
    heard = invalidation(b).received

    deleted = await a.delete(f"/api/customers/{customer['id']}", headers=keys.secret)
    assert deleted.status_code == 200, deleted.text
    await changed_on(b, heard)

    after_a = (await status(a, as_customer)).json()["caller"]["user_id"]
    after_b = (await status(b, as_customer)).json()["caller"]["user_id"]
    # The token now names a new, empty end user on both replicas, not the erased one.
    assert after_b == after_a != erased_user


async def test_without_redis_another_replica_trusts_its_copy_until_the_ttl(
    make_client: ClientFactory,
) -> None:
    a, b = await replicas(make_client, None)
    secret, revoke = await project_key(a)
    assert (await status(b, secret)).status_code == 200

    await revoke()

    assert_error(await status(a, secret), 401, "invalid_api_key")  # A dropped its own copy
    assert (await status(b, secret)).status_code == 200  # B: until CALLER_CACHE_SECONDS
    assert invalidation(b).received == 0
