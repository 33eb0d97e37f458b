"""schemathesis over `/openapi.json`, once per kind of credential, on SQLite and PostgreSQL
(issue 12 §6): no 5xx but a documented 503, no status, content type or body outside the
schema — and every refusal in the error envelope, which the schema declares for each one.

Bounded: a fixed, deterministic generation and a few examples per operation.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from conftest import make_settings
from platform_fixtures import end_user, new_project
from support import ADMIN_KEY, SERVICE_KEY, resolve, serving, token_pair
from tollhouse.app import create_app

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,"
CHECKS += "response_schema_conformance"
# A 5xx is a failure unless it is a 503 the operation documents (status_code_conformance).
CONFIG = '[checks.not_a_server_error]\nexpected-statuses = ["1XX", "2XX", "3XX", "4XX", "503"]\n'
EXAMPLES_PER_OPERATION = 2


async def schemathesis(url: str, headers: dict[str, str], config: Path) -> tuple[int, str]:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"]
    command += [f"{url}/openapi.json", "--checks", CHECKS, "--no-color"]
    command += ["--max-examples", str(EXAMPLES_PER_OPERATION), "--generation-deterministic"]
    command += ["--phases", "examples,fuzzing", "--seed", "1", "--request-timeout", "30"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    # A subprocess of its own: this event loop keeps serving the app meanwhile.
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_api_keeps_to_its_schema_for_every_credential(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(database_url, tmp_path))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    async with serving(app) as url:
        setup = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=url)
        user = await resolve(setup, "schemathesis")
        access = (await token_pair(setup, user))["access_token"]
        keys = await new_project(setup)
        credentials: dict[str, dict[str, str]] = {
            "service key": {"X-Service-Key": SERVICE_KEY, "X-User-ID": user},
            "admin key": {"X-Admin-Key": ADMIN_KEY},
            "user bearer": {"Authorization": f"Bearer {access}"},
            "secret key": keys.secret,
            "publishable key + end-user token": await end_user(setup, keys),
        }
        await setup.aclose()
        # Two runs at a time: generating cases costs more CPU than answering them.
        slots = asyncio.Semaphore(2)

        async def run(headers: dict[str, str]) -> tuple[int, str]:
            async with slots:
                return await schemathesis(url, headers, config)

        results = await asyncio.gather(*(run(headers) for headers in credentials.values()))
    failures = [
        f"--- {kind} ---\n{report[-6000:]}"
        for kind, (status, report) in zip(credentials, results, strict=True)
        if status != 0
    ]
    assert not failures, "\n".join(failures)
