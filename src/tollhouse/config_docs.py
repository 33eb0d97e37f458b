"""Every setting with its meaning, source and value: `tollhouse config` and `.env.example`.

The one source is `config.Settings`: a field's `description`, else the comment written
above it in config.py (so a new setting documented the usual way shows up by itself).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tollhouse import config
from tollhouse.config import GENERATED_SECRETS, HOME_ENV, SECRETS_FILE, Settings

_FIELD = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*): ")
HIDDEN = "•••• (hidden)"
# Meanings of the settings config.py leaves uncommented (a comment or a Field description
# there wins; new settings are documented there).
MEANINGS = {
    "tollhouse_env": "development, test or production (production refuses missing or weak "
    "secrets and names them)",
    "database_url": "postgresql://… uses asyncpg (run `tollhouse migrate` first); unset: "
    "SQLite in TOLLHOUSE_HOME",
    "db_health_timeout_seconds": "how long /health/deep waits for the database",
    "database_max_overflow": "PostgreSQL connections beyond the pool size, per process",
    "max_body_bytes": "larger request bodies get 413",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_json": "JSON log lines (true) or coloured human lines (false); unset: human in a "
    "development terminal, JSON otherwise",
    "auth_enabled": "false lets anonymous callers use the Gateway API",
    "jwt_secret_key": "signs our own access tokens (required in production)",
    "jwt_access_expire_minutes": "lifetime of access tokens",
    "jwt_refresh_expire_days": "lifetime of refresh tokens",
    "tollhouse_secret_pepper": "keys the hashes of API keys, tokens and refresh tokens and "
    "the encryption of stored Stripe tokens (required in production)",
    "apple_bundle_id": "enables Sign in with Apple (the app's bundle id, its token audience)",
    "apple_jwks_url": "Apple's signing keys",
    "google_oauth_client_id": "enables Sign in with Google (the token audience)",
    "google_jwks_url": "Google's signing keys",
    "jwt_issuers": "JSON list of external issuers: {issuer, jwks_url, audience, "
    "external_id_claim, external_id_prefix}",
    "jwks_cache_seconds": "how long a fetched JWKS is trusted",
    "jwks_refetch_cooldown_seconds": "at most one refetch per issuer in this window on an "
    "unknown kid",
    "jwks_timeout_seconds": "timeout of a JWKS fetch",
    "gateway_signing_secret": "HMAC secret of signed gateway requests",
    "gateway_signature_tolerance_seconds": "accepted clock skew of a signed request",
    "require_signed_gateway": "refuse the plain X-Service-Key + X-User-ID; signatures only",
    "admin_api_key": "X-Admin-Key of the operator (admin routes are off without it in production)",
    "billing_api_key": "X-Service-Key of the billing service (the internal credits API)",
    "signup_credits": "credits granted (and logged) to every new user",
    "credit_costs": "JSON overrides of the cost keys (GET /api/v1/credits/costs)",
    "hold_ttl_seconds": "an unsettled hold is released after this",
    "hold_sweep_interval_seconds": "how often expired holds (and orders) are swept",
    "cors_enabled": "answer CORS preflights",
    "cors_origins": "allowed origins, comma-separated or a JSON list",
    "rate_limit_key_prefix": "prefix of rate-limit keys in Redis",
    "clockchain_service_url": "the clockchain upstream (/api/v1/clockchain/*); unset: off",
    "clockchain_service_key": "X-Service-Key sent to the clockchain",
    "upstreams": "JSON list of the operator's services at /api/v1/upstreams/{name}/…: "
    "{name, url, prefix, inject_headers, methods, cost_key}",
    "upstream_connect_timeout_seconds": "connect timeout to an upstream",
    "upstream_read_timeout_seconds": "read timeout between an upstream's bytes",
    "upstream_health_timeout_seconds": "timeout of an upstream's health check",
    "home_platform_name": "name of the operator's own platform",
    "home_project_name": "name of the operator's own project (the Gateway API's users)",
    "billing_service_url": "a separate billing process to forward /api/v1/billing/* to",
    "gateway_internal_url": "the gateway's address, for a billing process (--role billing)",
    "billing_timeout_seconds": "timeout of calls between the gateway and billing",
    "apple_environment": "Production, Sandbox, Xcode or LocalTesting (the last two are "
    "refused in production)",
    "stripe_secret_key_live": "the operator's live-mode Stripe secret key",
    "stripe_webhook_secret_test": "signing secret of test-mode Stripe webhooks",
    "stripe_webhook_secret_live": "signing secret of live-mode Stripe webhooks",
    "stripe_connect_client_id_test": "Connect OAuth client id, test mode",
    "stripe_connect_client_id_live": "Connect OAuth client id, live mode",
    "stripe_connect_base": "where Connect OAuth calls go (unset: Stripe)",
    "stripe_max_network_retries": "the Stripe SDK's retries",
    "stripe_timeout_seconds": "timeout of a Stripe call",
    "stripe_webhook_tolerance_seconds": "accepted age of a Stripe webhook signature",
    "stripe_connect_done_url": "where a developer lands after connecting Stripe",
    "platform_meter_event_name": "Stripe meter event of the platform plan's overage",
    "platform_included_end_users": "live end users included in the platform plan",
    "platform_meter_interval_seconds": "how often the platform overage is reported",
    "openrouter_api_key": "scene generation through OpenRouter",
    "openrouter_base_url": "OpenRouter's API address",
    "llm_base_url": "any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio)",
    "llm_api_key": "the compatible server's API key",
    "llm_image_model": "the compatible server's image model",
    "llm_timeout_seconds": "timeout of one LLM call",
    "llm_retry_backoff_seconds": "first backoff between LLM retries (doubling)",
    "permissive_image_model": "image model of model_policy=permissive",
    "callback_backoff_seconds": "first backoff between callback attempts (doubling)",
    "callback_timeout_seconds": "timeout of one callback attempt",
    "s3_endpoint_url": "the bucket's endpoint (R2, MinIO); unset: AWS",
    "s3_region": "the bucket's region",
    "s3_access_key_id": "the bucket's access key id",
    "s3_secret_access_key": "the bucket's secret access key",
    "s3_key_prefix": "prefix of object keys in the bucket",
}


@dataclass(frozen=True, slots=True)
class SettingDoc:
    name: str  # the environment variable
    meaning: str
    default: str
    source: str  # environment | .env | TOLLHOUSE_HOME secrets | default
    value: str
    secret: bool


def _comments() -> dict[str, str]:
    """The comment block right above each Settings field in config.py, by field name."""
    lines = Path(config.__file__).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class Settings("))
    found: dict[str, str] = {}
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        if (match := _FIELD.match(line)) and len(" ".join(block).split()) > 2:
            found[match["name"]] = " ".join(block)
        block = []
    return found


def env_name(field: str) -> str:
    return HOME_ENV if field == "tollhouse_data_dir" else field.upper()


def _is_secret(field: str) -> bool:
    annotation = str(Settings.model_fields[field].annotation)
    return "SecretStr" in annotation


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return HIDDEN
    if isinstance(value, BaseSettings | list | dict) or hasattr(value, "model_dump"):
        dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        if isinstance(dumped, list):
            dumped = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in dumped]
        return json.dumps(dumped, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _default(field: str) -> str:
    info = Settings.model_fields[field]
    if field == "tollhouse_data_dir":
        return "the project's data/"
    return _show(info.get_default(call_default_factory=True))


def _dotenv_names() -> set[str]:
    path = Path(".env")
    if not path.is_file():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        name, _, _ = line.strip().partition("=")
        if name and not name.startswith("#"):
            names.add(name.removeprefix("export ").strip().upper())
    return names


def _meaning(field: str, comments: dict[str, str]) -> str:
    info = Settings.model_fields[field]
    return info.description or comments.get(field) or MEANINGS.get(field, "")


def describe(settings: Settings) -> list[SettingDoc]:
    """Each setting as the running configuration sees it; secrets never shown."""
    comments = _comments()
    in_env = {name.upper() for name in os.environ}
    in_dotenv = _dotenv_names()
    docs = []
    for field in Settings.model_fields:
        name = env_name(field)
        aliases = {name, field.upper()}
        if aliases & in_env:
            source = "environment"
        elif aliases & in_dotenv:
            source = ".env"
        elif field in GENERATED_SECRETS and getattr(settings, field) is not None:
            source = f"{HOME_ENV}/{SECRETS_FILE}"
        else:
            source = "default"
        secret = _is_secret(field)
        value = getattr(settings, field)
        shown = (HIDDEN if value is not None else "") if secret else _show(value)
        docs.append(
            SettingDoc(name, _meaning(field, comments), _default(field), source, shown, secret)
        )
    return docs


def env_example() -> str:
    """`.env.example`: every setting, commented out at its default, with its meaning."""
    comments = _comments()
    out = [
        "# Tollhouse settings: every one is optional on a development machine.",
        "# Generated by `tollhouse config --env-example`; do not edit by hand.",
        "",
    ]
    for field in Settings.model_fields:
        meaning = _meaning(field, comments)
        if meaning:
            out.append(f"# {meaning}")
        default = "" if field == "tollhouse_data_dir" or _is_secret(field) else _default(field)
        out.append(f"# {env_name(field)}={default}")
        out.append("")
    return "\n".join(out)
