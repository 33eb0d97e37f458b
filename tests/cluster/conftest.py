"""One cluster for the whole session: `make cluster`'s nginx in front of three `tollhouse
serve` replicas on PostgreSQL and Redis, with the tests' local LLM and Stripe as their
providers. Every proof in tests/cluster/ drives it over HTTP; a proof that kills or restarts
a replica leaves all three running again."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from cluster_support import BILLING_KEY, PACK, WEBHOOK_SECRET, Cluster
from llm_peer import LLMPeer
from stripe_peer import StripePeer
from support import ADMIN_KEY, JWT_SECRET, PEPPER, SERVICE_KEY, free_port
from tollhouse import cluster

# Long enough that a refusal inside the 1 s window can only come from the invalidation.
CACHE_SECONDS = "60"
REPLICAS = 3


def _requirements() -> tuple[str, str]:
    database = os.environ.get("TOLLHOUSE_TEST_DATABASE_URL")
    redis = os.environ.get("TOLLHOUSE_TEST_REDIS_URL")
    nginx = shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
    if not database or not redis or not nginx:
        pytest.skip("the cluster needs PostgreSQL, Redis (TOLLHOUSE_TEST_*_URL) and nginx")
    return database, redis


@pytest.fixture(scope="session")
def running(
    tmp_path_factory: pytest.TempPathFactory,
    llm_peer_server: LLMPeer,
    stripe_peer_server: StripePeer,
) -> Iterator[Cluster]:
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
        "METERING_KEY_PREFIX": f"{run}meter:",
        "INVALIDATION_CHANNEL": f"{run}invalidate",
        "CALLER_CACHE_SECONDS": CACHE_SECONDS,
        "ADMIN_API_KEY": ADMIN_KEY,
        "FLASH_SERVICE_KEY": SERVICE_KEY,
        "BILLING_API_KEY": BILLING_KEY,
        "JWT_SECRET_KEY": JWT_SECRET,
        "TOLLHOUSE_SECRET_PEPPER": PEPPER,
        "LOG_LEVEL": "WARNING",
        # Short enough that a proof sees its counts in the database within a second or two.
        "METERING_FLUSH_SECONDS": "0.2",
        "DRAIN_TIMEOUT_SECONDS": "5",
        # Generation on the local scripted LLM (tests/llm_peer.py), as the README runs it.
        "LLM_BASE_URL": llm_peer_server.openai_base_url,
        "LLM_API_KEY": "peer-key",
        "LLM_MODEL": "scripted",
        "LLM_IMAGE_MODEL": "scripted-image",
        # Credit packs sold on the local Stripe; webhooks signed with this secret.
        "STRIPE_SECRET_KEY_LIVE": "sk_live_cluster",
        "STRIPE_WEBHOOK_SECRET_LIVE": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_peer_server.base_url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "BILLING_PRODUCTS": json.dumps({"credit_packs": [PACK], "subscriptions": []}),
    }
    run_dir = tmp_path_factory.mktemp("cluster")
    port, replica_ports = free_port(), tuple(free_port() for _ in range(REPLICAS))
    plain_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    running = Cluster(
        f"http://127.0.0.1:{port}",
        tuple(f"http://127.0.0.1:{p}" for p in replica_ports),
        replica_ports,
        run_dir,
        cluster.replica_env(env),
        plain_url,
    )
    try:
        running.processes = cluster.start(run_dir, "127.0.0.1", port, replica_ports, env)
        yield running
    finally:
        cluster.stop(run_dir)
        for process in running.processes:
            process.wait(timeout=30)
        asyncio.run(_drop_database(database, name))


async def _drop_database(server_url: str, name: str) -> None:
    server = make_url(server_url).set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
