"""Fixtures: a fresh database per backend per run, an app + HTTP client per test.

SQLite always; PostgreSQL too when TOLLHOUSE_TEST_DATABASE_URL names a server we may create
databases on (the suite creates its own and drops it afterwards).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from support import ADMIN_KEY, JWT_SECRET, PEPPER, SERVICE_KEY, SIGNING_SECRET, ClientFactory
from tollhouse.app import create_app
from tollhouse.config import Settings, normalize_database_url
from tollhouse.db import migrate
from tollhouse.db.engine import create_engine

PG_URL_ENV = "TOLLHOUSE_TEST_DATABASE_URL"
# The local Stripe peer's fixtures (stripe_peer, stripe_peer_server) for every module.
pytest_plugins = [
    "stripe_peer",
    "llm_peer",
    "callback_receiver",
    "s3_peer",
    "gen_support",
    "clockchain_peer",
]


_skipped_postgres: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server, its half of the suite is set aside and counted once."""
    if os.environ.get(PG_URL_ENV):
        return
    kept = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgres":
            _skipped_postgres.append(item.nodeid)
        else:
            kept.append(item)
    if _skipped_postgres:
        config.hook.pytest_deselected(
            items=[i for i in items if i.nodeid in set(_skipped_postgres)]
        )
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skipped_postgres:
        terminalreporter.write_line(
            f"SKIPPED the PostgreSQL suite ({len(_skipped_postgres)} tests): "
            f"{PG_URL_ENV} is not set; `bash .ci/run` sets it when 127.0.0.1:5432 answers",
            yellow=True,
        )


def pytest_report_header() -> list[str]:
    server = os.environ.get(PG_URL_ENV)
    if server:
        return [f"postgresql suite: on {make_url(server).render_as_string()}"]
    return [f"postgresql suite: SKIPPED ({PG_URL_ENV} is not set)"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


async def _admin_execute(server_url: str, statement: str) -> None:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh copy of the migrated database per test (the ledger log refuses DELETE)."""
    path = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def postgres_server_database() -> Iterator[str]:
    server = os.environ.get(PG_URL_ENV)
    if not server:
        pytest.skip(f"PostgreSQL suite skipped: {PG_URL_ENV} is not set")
    server_url = normalize_database_url(server)
    name = f"tollhouse_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        asyncio.run(_admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# Every table emptied and every used sequence restarted, as `TRUNCATE … RESTART IDENTITY`
# would, in one round trip. DELETE, not TRUNCATE: TRUNCATE gives each of the ~35 tables new
# files (about a second a test on a loaded machine); DELETE of a test's few rows takes
# milliseconds. `session_replication_role = replica` (superuser, this transaction only) turns
# off the ledger's append-only trigger and the foreign-key checks while it runs.
EMPTY_DATABASE = """DO $$
DECLARE
    name text;
    sequence record;
BEGIN
    SET LOCAL session_replication_role = replica;
    FOR name IN SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
            WHERE schemaname = current_schema() AND tablename <> 'alembic_version' LOOP
        EXECUTE 'DELETE FROM ' || name;
    END LOOP;
    FOR sequence IN SELECT format('%I.%I', schemaname, sequencename) AS name, start_value
            FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL LOOP
        PERFORM setval(sequence.name::regclass, sequence.start_value, false);
    END LOOP;
END $$"""


@pytest.fixture
async def postgres_url(postgres_server_database: str) -> AsyncIterator[str]:
    yield postgres_server_database
    await _admin_execute(postgres_server_database, EMPTY_DATABASE)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def postgres_only(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrency proof runs on PostgreSQL")
    return database_url


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "tollhouse_env": "test",
        "tollhouse_data_dir": data_dir,
        "database_url": database_url,
        "jwt_secret_key": JWT_SECRET,
        "tollhouse_secret_pepper": PEPPER,
        "flash_service_key": SERVICE_KEY,
        "gateway_signing_secret": SIGNING_SECRET,
        "admin_api_key": ADMIN_KEY,
        "log_json": True,
        "log_level": "WARNING",
    }
    values.update(overrides)
    # Validated as a model, not read from the environment: tests see only what they set, and
    # skipping the settings sources saves ~40 ms per app.
    return Settings.model_validate(values)


@pytest.fixture
async def make_client(database_url: str, tmp_path: Path) -> AsyncIterator[ClientFactory]:
    """Build an app with settings overrides and a client talking to it in-process."""
    stack: list[tuple[Any, httpx.AsyncClient]] = []

    async def factory(**overrides: Any) -> httpx.AsyncClient:
        app = create_app(make_settings(database_url, tmp_path, **overrides))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tollhouse.test"
        )
        stack.append((lifespan, client))
        return client

    yield factory
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client()
