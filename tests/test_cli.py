"""The `tollhouse` command line as an operator meets it: one-line configuration errors, one
home shared with the server, listings with --json, `config`, `doctor`, a light start-up."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli_support import cli_env, tollhouse
from support import ADMIN_KEY, PEPPER, SERVICE, resolve
from tollhouse.cli import app as cli
from tollhouse.config import Settings, load_settings
from tollhouse.db import migrate
from tollhouse.kit.logging import configure_logging

ROOT = Path(__file__).resolve().parents[1]


def _short_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 2, no traceback, at most two lines on stderr naming what is wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("command", "setting", "value", "needles"),
    [
        (
            ["serve", "--port", "0"],
            "SIGNUP_CREDITS",
            "lots",
            ("SIGNUP_CREDITS=lots", "valid integer", "default 50"),
        ),
        (
            ["users", "list"],
            "CREDIT_COSTS",
            "{not json",
            ("CREDIT_COSTS is not valid JSON", "fix the value"),
        ),
        (
            ["config"],
            "CREDIT_COSTS",
            '{"generate_hd": "ten"}',
            ("CREDIT_COSTS", "generate_hd", "integer"),
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, command: list[str], setting: str, value: str, needles: tuple[str, ...]
) -> None:
    _short_refusal(tollhouse(*command, home=tmp_path / "home", **{setting: value}), *needles)


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["ledger", "verify"]])
def test_a_dead_database_url_is_named(tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    dead = f"postgresql://tollhouse:hunter2@127.0.0.1:{port}/nowhere"
    result = tollhouse(*command, home=tmp_path / "home", DATABASE_URL=dead)
    _short_refusal(result, "DATABASE_URL", f"127.0.0.1:{port}/nowhere", "Start the database")
    assert "hunter2" not in result.stderr


def test_a_busy_port_is_refused_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tollhouse("serve", "--port", str(port), home=tmp_path / "home")
    _short_refusal(result, f"--port {port}", "already in use", "another --port")
    assert not (tmp_path / "home").exists()  # refused before migrating or making secrets


def test_a_cli_without_secrets_says_so_and_makes_none(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    result = tollhouse("secrets", "show", "FLASH_SERVICE_KEY", home=home)
    _short_refusal(result, "No development secrets", str(home / "secrets.json"), "TOLLHOUSE_HOME")
    assert not (home / "secrets.json").exists()


def test_the_cli_finds_the_servers_home_from_any_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = load_settings(_env_file=None, tollhouse_data_dir=home)  # what `serve` does first
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    shown = tollhouse("secrets", "show", "FLASH_SERVICE_KEY", home=home, cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == made.secret("flash_service_key")
    assert not (elsewhere / "data").exists()


def test_migrate_says_which_migrations_it_applied(tmp_path: Path) -> None:
    first = tollhouse("migrate", "--json", home=tmp_path / "home")
    assert first.returncode == 0, first.stderr
    applied = json.loads(first.stdout)
    assert applied["applied"][0].startswith("0001 ")
    assert applied["applied"][-1].split()[0] == applied["revision"]
    again = tollhouse("migrate", home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert f"Database at revision {applied['revision']} (nothing to apply)" in again.stdout


def test_help_and_version_do_not_import_the_application() -> None:
    probe = (
        "import sys, tollhouse.cli; "
        "print(sorted(m for m in ('sqlalchemy', 'fastapi', 'boto3', 'stripe', 'pydantic') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_a_database_command_loads_neither_the_web_stack_nor_alembic(tmp_path: Path) -> None:
    """What keeps `tollhouse users list` near the cost of importing SQLAlchemy itself."""
    home = tmp_path / "home"
    assert tollhouse("migrate", home=home).returncode == 0
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tollhouse.cli import app\n"
        "result = CliRunner().invoke(app, ['users', 'list', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'alembic', 'boto3', 'aiohttp',"
        " 'stripe', 'jinja2', 'structlog') if m in sys.modules))\n"
    )
    loaded = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=cli_env(home),
        cwd=tmp_path,
    )
    assert loaded.stdout.strip().splitlines()[-1] == "[]"


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    assert migrate._head_from_text() is not None
    assert migrate.head_revision() == migrate._alembic_head()


def test_env_example_is_current() -> None:
    result = CliRunner().invoke(cli, ["config", "--env-example"])
    assert result.exit_code == 0, result.output
    checked_in = (ROOT / ".env.example").read_text()
    assert result.stdout == checked_in, (
        "`.env.example` is stale: run `.venv/bin/tollhouse config --env-example > .env.example`"
    )


def test_config_lists_every_setting_with_source_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOLLHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNUP_CREDITS", "7")
    monkeypatch.setenv("ADMIN_API_KEY", ADMIN_KEY)
    result = CliRunner().invoke(cli, ["config", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["SIGNUP_CREDITS"] | {"meaning": "…"} == {
        "name": "SIGNUP_CREDITS",
        "meaning": "…",
        "default": "50",
        "source": "environment",
        "value": "7",
        "secret": False,
    }
    assert rows["ADMIN_API_KEY"]["value"] == "•••• (hidden)"
    assert ADMIN_KEY not in result.stdout
    assert rows["TOLLHOUSE_HOME"]["value"] == str(tmp_path / "home")
    assert rows["MAX_BODY_BYTES"]["source"] == "default"
    assert all(row["meaning"] for row in rows.values())


# --- the operator's listings, on both backends --------------------------------------------


@pytest.mark.anyio
async def test_listings_and_grants_through_the_services(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOLLHOUSE_SECRET_PEPPER", PEPPER)
    load_settings(_env_file=None)  # the home's secrets, as `serve` makes them

    async def run(*args: str, code: int = 0) -> Any:
        result = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--json"])
        assert result.exit_code == code, result.output
        return json.loads(result.stdout) if code == 0 else result

    ada = await resolve(client, "ada", email="ada@example.com")
    granted = await run("credits", "grant", "ada", "25", "--description", "goodwill")
    assert granted == {"granted": 25, "balance": 75}
    history = await run("credits", "history", "ada")
    assert [(r["type"], r["amount"], r["balance_after"]) for r in history] == [
        ("admin_grant", 25, 75),
        ("signup_bonus", 50, 50),
    ]
    balance = await client.get("/api/v1/credits/balance", headers={**SERVICE, "X-User-ID": "ada"})
    assert balance.json()["balance"] == 75
    users = await run("users", "list")
    assert [(u["id"], u["external_id"], u["email"]) for u in users] == [
        (ada, "ada", "ada@example.com")
    ]
    missing = await run("credits", "grant", "nobody", "5", code=1)
    assert "user_not_found" in missing.output

    platform = await run("platform", "create", "--email", "ops@example.com", "--password", "x" * 12)
    project = await run("projects", "create", platform["platform_id"], "Shop")
    listed = await run("projects", "list", "--platform", platform["platform_id"])
    assert [(p["id"], p["name"], p["mode"]) for p in listed] == [
        (project["project_id"], "Shop", "test")
    ]
    keys = await run("keys", "list", "--project", project["project_id"])
    assert sorted(k["kind"] for k in keys) == ["publishable", "secret"]
    assert all(project["secret_key"] not in json.dumps(k) for k in keys)
    assert await run("tiers", "list", "--project", project["project_id"]) == []
    audit = await run("audit", "--platform", platform["platform_id"])
    assert [e["action"] for e in audit] == ["project.create", "developer.signup"]
    assert await run("upstreams", "list", "--project", project["project_id"]) == []
    stripe = await run("stripe", "status")
    assert [(s["mode"], s["secret_key"], s["connected_accounts"]) for s in stripe] == [
        ("test", False, 0),
        ("live", False, 0),
    ]
    products = await run("products")
    assert {p["kind"] for p in products} == {"credit_pack", "subscription"}


@pytest.mark.anyio
async def test_doctor_names_what_is_misconfigured(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TOLLHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STRIPE_SECRET_KEY_TEST", "sk_test_x")
    monkeypatch.setenv("UPSTREAMS", json.dumps([{"name": "maps", "url": dead}]))
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["doctor", "--json"])
    assert result.exit_code == 1, result.output
    checks = {c["area"]: c for c in json.loads(result.stdout)}
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "off"
    assert checks["providers"]["status"] == "off"
    assert checks["stripe (test)"]["status"] == "problem"
    assert "STRIPE_WEBHOOK_SECRET_TEST" in checks["stripe (test)"]["detail"]
    assert checks["upstream maps"]["status"] == "problem"


# --- logs ------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "log_json", "terminal", "as_json"),
    [
        ("development", None, True, False),  # a developer's terminal: coloured lines
        ("development", None, False, True),  # piped or collected: JSON
        ("production", None, True, True),  # production: JSON, even on a terminal
        ("development", True, True, True),  # LOG_JSON decides when set
        ("production", False, False, False),
    ],
)
def test_logs_are_human_in_a_dev_terminal_and_json_elsewhere(
    monkeypatch: pytest.MonkeyPatch, env: str, log_json: bool | None, terminal: bool, as_json: bool
) -> None:
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    settings = Settings.model_validate({"tollhouse_env": env, "log_json": log_json})
    assert settings.logs_as_json is as_json
    try:
        configure_logging("INFO", json=settings.logs_as_json, stream=stream)
        logging.getLogger("tollhouse.test").info("hello %s", "there", extra={"token": "x"})
    finally:
        configure_logging("WARNING", json=True)
    line = stream.getvalue().strip()
    if as_json:
        assert json.loads(line)["event"] == "hello there"
    else:
        assert "hello there" in line
        assert "\x1b[" in line  # coloured
