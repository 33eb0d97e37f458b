"""Configuration (dev secrets, production refusals) and the `tollhouse` command line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tollhouse import __version__
from tollhouse.cli import app as cli
from tollhouse.config import ConfigError, Settings, load_settings, normalize_database_url

STRONG = "s" * 40


def test_no_variables_at_all_generates_and_keeps_dev_secrets(tmp_path: Path) -> None:
    first = load_settings(_env_file=None, tollhouse_data_dir=tmp_path)
    second = load_settings(_env_file=None, tollhouse_data_dir=tmp_path)
    for name in (
        "jwt_secret_key",
        "tollhouse_secret_pepper",
        "flash_service_key",
        "admin_api_key",
        "billing_api_key",
    ):
        value = first.secret(name)
        assert value is not None
        assert len(value) >= 32
        assert second.secret(name) == value
    secrets_file = tmp_path / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert first.secret("admin_api_key") is not None
    assert first.secret("gateway_signing_secret") is None
    assert first.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'tollhouse.db'}"


def test_explicit_secrets_win_over_generated_ones(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, tollhouse_data_dir=tmp_path, jwt_secret_key=STRONG)
    assert settings.secret("jwt_secret_key") == STRONG


def test_production_refuses_missing_and_weak_secrets_and_names_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings(_env_file=None, tollhouse_env="production", tollhouse_data_dir=tmp_path)
    for name in ("JWT_SECRET_KEY", "TOLLHOUSE_SECRET_PEPPER", "FLASH_SERVICE_KEY"):
        assert name in str(missing.value)
    assert not (tmp_path / "secrets.json").exists()

    with pytest.raises(ConfigError) as weak:
        load_settings(
            _env_file=None,
            tollhouse_env="production",
            jwt_secret_key="change-me",
            tollhouse_secret_pepper=STRONG,
            flash_service_key=STRONG,
            admin_api_key="short",
        )
    message = str(weak.value)
    assert "JWT_SECRET_KEY is a well-known default value" in message
    assert "ADMIN_API_KEY is shorter than 32 characters" in message
    assert "PEPPER" not in message


def test_production_starts_with_strong_secrets() -> None:
    settings = load_settings(
        _env_file=None,
        tollhouse_env="production",
        jwt_secret_key=STRONG,
        tollhouse_secret_pepper=STRONG + "p",
        flash_service_key=STRONG + "f",
    )
    assert settings.is_production


def test_environment_variables_use_the_seed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_ENABLED", "false")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("JWT_ACCESS_EXPIRE_MINUTES", "5")
    monkeypatch.setenv("REQUIRE_SIGNED_GATEWAY", "true")
    monkeypatch.setenv("APPLE_BUNDLE_ID", "com.example.app")
    monkeypatch.setenv(
        "JWT_ISSUERS", '[{"issuer": "https://x", "jwks_url": "https://x/j", "audience": "a"}]'
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.auth_enabled is False
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.jwt_access_expire_minutes == 5
    assert settings.require_signed_gateway is True
    issuers = [issuer.issuer for issuer in settings.external_issuers()]
    assert issuers == ["https://x", "https://appleid.apple.com"]


def test_dot_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ADMIN_API_KEY=from-the-dot-env-file-0123456789abcdef\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.secret("admin_api_key") == "from-the-dot-env-file-0123456789abcdef"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


# --- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    for name in ("DATABASE_URL", "FLASH_SERVICE_KEY", "JWT_SECRET_KEY", "TOLLHOUSE_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOLLHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    load_settings(_env_file=None)  # the home's secrets, as `tollhouse serve` makes them
    return CliRunner()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_users_resolve_and_tokens_issue(runner: CliRunner) -> None:
    first = runner.invoke(cli, ["users", "resolve", "cli-user", "--email", "c@example.com"])
    assert first.exit_code == 0, first.output
    created = json.loads(first.output)
    assert created["created"] is True
    again = json.loads(runner.invoke(cli, ["users", "resolve", "cli-user"]).output)
    assert again == {"user_id": created["user_id"], "created": False}

    issued = runner.invoke(cli, ["tokens", "issue", "cli-user"])
    assert issued.exit_code == 0, issued.output
    pair = json.loads(issued.output)
    assert pair["token_type"] == "bearer"
    assert pair["access_token"].count(".") == 2

    missing = runner.invoke(cli, ["tokens", "issue", "nobody"])
    assert missing.exit_code == 1
    assert "user_not_found" in missing.output


def test_migrate_and_secrets_show(runner: CliRunner, tmp_path: Path) -> None:
    migrated = runner.invoke(cli, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert (tmp_path / "data" / "tollhouse.db").exists()
    key = runner.invoke(cli, ["secrets", "show", "FLASH_SERVICE_KEY"])
    stored = json.loads((tmp_path / "data" / "secrets.json").read_text())
    assert key.output.strip() == stored["flash_service_key"]


def test_production_cli_refuses_and_says_why(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLHOUSE_ENV", "production")
    result = runner.invoke(cli, ["migrate"])
    assert result.exit_code == 2
    assert "JWT_SECRET_KEY is not set" in result.output
