"""Fixtures: a fresh database per backend per run, an app + HTTP client per test.

SQLite always; PostgreSQL too when TOLLHOUSE_TEST_DATABASE_URL names a server we may create
databases on (the suite creates its own and drops it afterwards).
"""

from __future__ import annotations

import asyncio
import os
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
from tollhouse.db.models import metadata

PG_URL_ENV = "TOLLHOUSE_TEST_DATABASE_URL"


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
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
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
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def _empty_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await engine.dispose()


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
    await _empty_tables(database_url)


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client()
