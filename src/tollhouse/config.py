"""Settings from the environment (and `.env`), with env names that follow the seeds.

`load_settings()` is the one way in: it reads the environment, fills the secrets a
development machine may leave unset from a file in the data directory (generated once), and
refuses to return production settings that carry a missing or well-known secret.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

SECRETS_FILE = "secrets.json"
HOME_ENV = "TOLLHOUSE_HOME"
# Secrets the service cannot run without: required in production.
REQUIRED_SECRETS = ("jwt_secret_key", "tollhouse_secret_pepper", "flash_service_key")
# Secrets that switch a feature on when set; in production they must not be weak.
OPTIONAL_SECRETS = ("admin_api_key", "billing_api_key", "gateway_signing_secret")
# What a dev machine gets without asking, so every feature can be tried locally.
GENERATED_SECRETS = (*REQUIRED_SECRETS, "admin_api_key", "billing_api_key")
WELL_KNOWN_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "dev",
        "development",
        "test",
        "your-secret-key",
        "your-secret-key-here",
        "please-change-me",
        "supersecret",
    }
)
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names every offending setting."""


class IssuerConfig(BaseModel):
    """An external identity provider whose JWTs we accept, verified against its JWKS."""

    issuer: str
    jwks_url: str
    audience: str | list[str]
    external_id_claim: str = "sub"
    # Namespaces the external id so two issuers' subjects never collide ("google:123").
    external_id_prefix: str = ""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    # Additional `iss` spellings for the same provider (Google uses two).
    aliases: list[str] = Field(default_factory=list)


# Apple and Gateway billing: the catalogue home-project users buy from (BILLING_PRODUCTS).
class CreditPackConfig(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=100)
    credits: int = Field(gt=0, le=2**31 - 1)
    price_cents: int = Field(ge=0)
    currency: str = Field("usd", min_length=3, max_length=3)
    apple_product_id: str | None = Field(None, min_length=1, max_length=255)
    stripe_price_id: str | None = Field(None, min_length=1, max_length=255)


class SubscriptionPlanConfig(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=100)
    # Granted every month, whatever the billing interval (a yearly plan grants 12 times).
    credits_per_month: int = Field(gt=0, le=2**31 - 1)
    interval: Literal["month", "year"] = "month"
    price_cents: int = Field(ge=0)
    currency: str = Field("usd", min_length=3, max_length=3)
    apple_product_id: str | None = Field(None, min_length=1, max_length=255)
    stripe_price_id: str | None = Field(None, min_length=1, max_length=255)
    # The tier clients see in /billing/status `subscription_tier` (timepoint-mcp reads it);
    # unset: the plan's id.
    tier: str | None = Field(None, min_length=1, max_length=40)


class BillingProductsConfig(BaseModel):
    credit_packs: list[CreditPackConfig] = Field(default_factory=list)
    subscriptions: list[SubscriptionPlanConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> BillingProductsConfig:
        products: list[CreditPackConfig | SubscriptionPlanConfig] = [
            *self.credit_packs,
            *self.subscriptions,
        ]
        for field in ("id", "apple_product_id", "stripe_price_id"):
            values = [getattr(p, field) for p in products if getattr(p, field) is not None]
            if len(values) != len(set(values)):
                raise ValueError(f"BILLING_PRODUCTS: every {field} must be unique")
        return self


class UpstreamRouteRule(BaseModel):
    """One line of an upstream's route policy (upstreams/policy.py): method + path pattern →
    who may call, what it costs and which answers keep the charge. First match wins; a call
    no line lists answers 404 without reaching the upstream."""

    methods: list[str] = Field(min_length=1)
    # Below the upstream's prefix: literal segments, "*" for one segment, a final "**" for
    # any rest (none included): "moments/**", "ingest/*", "index".
    path: str
    # anyone (anonymous too) | user (any authenticated Gateway caller) | admin (X-Admin-Key)
    # | none (404, as if unlisted)
    access: Literal["anyone", "user", "admin", "none"] = "user"
    # A cost-table key ("clockchain_ingest") or a number of credits; none = free.
    price: str | int | None = None
    # Upstream statuses that keep the charge: classes and codes, comma-separated ("2xx,304").
    charge_on: str = "2xx"
    # Send the upstream's configured credentials (service key, writer token); off for
    # routes the upstream serves to anonymous callers, so it answers as it would to them.
    credentials: bool = True

    @field_validator("methods")
    @classmethod
    def _upper(cls, methods: list[str]) -> list[str]:
        return [method.upper() for method in methods]


class OperatorUpstream(BaseModel):
    """One of the operator's own services, served at /api/v1/upstreams/{name}/... (UPSTREAMS)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    url: str = Field(pattern=r"^https?://")
    # A path prefix on the upstream side ("/api/v1"): /api/v1/upstreams/{name}/x → {url}{prefix}/x.
    prefix: str = ""
    inject_headers: dict[str, SecretStr] = Field(default_factory=dict)
    methods: list[str] = Field(default_factory=lambda: ["GET"])
    # A ledger cost key charged per call (held, captured when the upstream answers 2xx).
    cost_key: str | None = None
    # The route policy; unset: `methods` on every path, for any authenticated caller, at
    # `cost_key`.
    routes: list[UpstreamRouteRule] | None = None
    # Sent as `Authorization: Bearer …` on writes (never the caller's own credentials).
    writer_token: SecretStr | None = None

    @field_validator("methods")
    @classmethod
    def _upper(cls, methods: list[str]) -> list[str]:
        return [method.upper() for method in methods]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    tollhouse_env: Literal["development", "test", "production"] = "development"
    # The one home of the SQLite file and the generated dev secrets, for the server and the
    # CLI alike (TOLLHOUSE_HOME; TOLLHOUSE_DATA_DIR is its older name).
    tollhouse_data_dir: Path = Field(
        default_factory=lambda: default_home(),
        validation_alias=AliasChoices("tollhouse_home", "tollhouse_data_dir"),
    )
    database_url: str | None = None
    db_health_timeout_seconds: float = 5.0
    # PostgreSQL connections per process (SQLite always uses one).
    database_pool_size: int = Field(10, ge=1)
    database_max_overflow: int = Field(5, ge=0)
    # A round trip on every checkout (about 15% of a spend's cost). Off, a connection the
    # server dropped fails the one request that meets it and the pool renews the rest.
    database_pool_pre_ping: bool = False
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    log_level: str = "INFO"
    # JSON log lines (true) or coloured human lines (false); unset: human lines in a
    # development terminal, JSON in production or when the output is not a terminal.
    log_json: bool | None = None

    # Identity
    auth_enabled: bool = True
    jwt_secret_key: SecretStr | None = None
    jwt_access_expire_minutes: int = Field(15, ge=1)
    jwt_refresh_expire_days: int = Field(30, ge=1)
    tollhouse_secret_pepper: SecretStr | None = None
    apple_bundle_id: str | None = None
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"
    google_oauth_client_id: str | None = None
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    jwt_issuers: list[IssuerConfig] = Field(default_factory=list)
    jwks_cache_seconds: int = Field(300, ge=0)
    jwks_refetch_cooldown_seconds: float = Field(30.0, ge=0)
    jwks_timeout_seconds: float = Field(5.0, gt=0)
    # How long a process may keep answering from its cache of resolved users (0 = never cache).
    caller_cache_seconds: float = Field(2.0, ge=0, le=60)
    # Let developers point JWKS URLs and upstreams at private or loopback addresses (and plain
    # http). Unset: on for TOLLHOUSE_ENV=development, off otherwise — never on a shared
    # deployment (SSRF).
    allow_private_upstreams: bool | None = None
    # Console log-in attempts per account per minute (5x that per client address).
    console_login_attempts_per_minute: int = Field(10, ge=1, le=1000)
    # Console sign-ups per client address per minute (each hashes a password: CPU to protect).
    console_signups_per_minute: int = Field(5, ge=1, le=1000)
    # Lifetime of end-user tokens minted by POST /api/customers/{id}/token.
    end_user_token_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    # How often API keys' last use is written (one statement for every key used meanwhile).
    key_usage_flush_seconds: float = Field(1.0, gt=0)

    # Service-to-service and operator credentials
    flash_service_key: SecretStr | None = None
    gateway_signing_secret: SecretStr | None = None
    gateway_signature_tolerance_seconds: int = Field(300, ge=1)
    require_signed_gateway: bool = False
    admin_api_key: SecretStr | None = None
    billing_api_key: SecretStr | None = None

    # Credits
    signup_credits: int = Field(50, ge=0)
    credit_costs: dict[str, int] = Field(default_factory=dict)
    hold_ttl_seconds: int = Field(600, ge=1)
    hold_sweep_interval_seconds: float = Field(30.0, gt=0)
    # How long a cart checkout holds its stock (Stripe's session lives at least 31 minutes).
    cart_hold_minutes: int = Field(60, ge=1, le=24 * 60)

    # HTTP
    cors_enabled: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    # Shared rate-limit counters (and, later, jobs and events); unset = this process only.
    redis_url: str | None = None
    rate_limit_key_prefix: str = "tollhouse:rl:"
    # Generation events in Redis (followed from any replica).
    events_key_prefix: str = "tollhouse:events:"
    # Cache invalidations between replicas (Redis pub/sub channel, used when REDIS_URL is set).
    invalidation_channel: str = "tollhouse:invalidate"
    # This process's name in /metrics (`replica` label); unset: "<hostname>:<pid>".
    replica_name: str | None = Field(None, min_length=1, max_length=100)
    # On SIGTERM: how long in-flight requests may run on before the process exits anyway.
    drain_timeout_seconds: float = Field(20.0, ge=0)
    # Where background jobs (generation runs, callbacks, re-grounding, sweepers, purges,
    # grants) run: memory = tasks of this process (embedded default); redis = the SAQ queue on
    # REDIS_URL, run by `tollhouse worker` processes (and `serve --role all`), periodic ones
    # once per period across the cluster.
    job_queue: Literal["memory", "redis"] = "memory"
    # The SAQ queue's name (its Redis keys start with saq:<name>:).
    job_queue_name: str = Field("tollhouse", min_length=1, max_length=100)
    # A running job silent this long (its worker was killed) is taken back by another worker.
    job_heartbeat_seconds: float = Field(10.0, ge=1)
    # Runs of one generation (callback, re-grounding task) at most: one whose worker died is
    # run again until this many.
    generation_job_attempts: int = Field(2, ge=1, le=10)

    # Quota metering off the request path (metering/meter.py): counts are decided in memory
    # (or in Redis when REDIS_URL is set) and written to the database in batches this often.
    metering_flush_seconds: float = Field(1.0, gt=0, le=60)
    # Without Redis, a limited tier's units are reserved in the database this many at a time
    # before being served from memory (a crash can refuse at most this many early).
    metering_lease_units: int = Field(20, ge=1, le=10_000)
    # Prefix of the meter's Redis keys (several deployments may share one Redis).
    metering_key_prefix: str = "tollhouse:meter:"
    # Requests in flight per worker before new ones are shed with 503 + Retry-After (0 = no
    # bound): past capacity, what is served keeps its latency instead of everything queueing.
    max_concurrent_requests: int = Field(0, ge=0, le=100_000)

    # Upstreams: the clockchain (/api/v1/clockchain/*), the operator's own services
    # (UPSTREAMS, JSON list) and developers' APIs (/gw/{project}/*).
    clockchain_enabled: bool = True
    clockchain_service_url: str | None = None
    clockchain_service_key: SecretStr | None = None
    # The clockchain's route policy (JSON list of rules); unset: the default policy
    # (public reads, paid ingest/index, nothing administrative; see README).
    clockchain_routes: list[UpstreamRouteRule] | None = None
    # A clockchain WRITER_TOKENS token, sent as a bearer token on its writes.
    clockchain_writer_token: SecretStr | None = None
    # Service key + X-User-ID (the memo's relay) spends that user's credits; false: services
    # relaying users meter for themselves and such calls are not charged here (as Flash).
    relay_metered: bool = True
    upstreams: list[OperatorUpstream] = Field(default_factory=list)
    upstream_connect_timeout_seconds: float = Field(5.0, gt=0)
    upstream_read_timeout_seconds: float = Field(30.0, gt=0)
    # Until the upstream's headers arrive; a streamed body may take longer.
    upstream_total_timeout_seconds: float = Field(60.0, gt=0)
    upstream_health_timeout_seconds: float = Field(2.0, gt=0)

    # Tenancy
    home_platform_name: str = "home"
    home_project_name: str = "home"

    # Apple and Gateway billing
    # The catalogue (JSON: {"credit_packs": [...], "subscriptions": [...]}); unset = defaults.
    billing_products: BillingProductsConfig | None = None
    # Billing topology (`tollhouse serve --role`): off = no /api/v1/billing/* at all; with
    # BILLING_SERVICE_URL the gateway forwards them to a billing process, which reaches the
    # ledger at GATEWAY_INTERNAL_URL. Both sides authenticate with BILLING_API_KEY.
    billing_enabled: bool = True
    billing_service_url: str | None = None
    gateway_internal_url: str | None = None
    billing_timeout_seconds: float = Field(15.0, gt=0)
    # App Store signed data (StoreKit 2 transactions, Server Notifications V2). APPLE_BUNDLE_ID
    # (above) is the app's bundle id; APPLE_APP_ID its numeric Apple id (needed in Production).
    apple_app_id: int | None = Field(None, gt=0)
    apple_environment: Literal["Production", "Sandbox", "Xcode", "LocalTesting"] = "Production"
    # Trusted roots: file paths (DER or PEM) or base64 DER, comma-separated or a JSON list.
    apple_root_certificates: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # OCSP against the certificates' responders (network on every new chain).
    apple_online_checks: bool = False
    # How often the monthly grants of yearly subscriptions are looked for.
    subscription_grant_interval_seconds: float = Field(3600.0, gt=0)

    @field_validator("apple_environment")
    @classmethod
    def _verified_apple_in_production(cls, value: str, info: ValidationInfo) -> str:
        # Xcode and LocalTesting data is not signed by Apple: the verifier skips the signature.
        if info.data.get("tollhouse_env") == "production" and value not in (
            "Production",
            "Sandbox",
        ):
            raise ValueError(f"APPLE_ENVIRONMENT={value} skips verification: not in production")
        return value

    # Stripe (per mode; a mode without a secret key cannot sell: 503 stripe_not_configured)
    stripe_secret_key_test: SecretStr | None = None
    stripe_secret_key_live: SecretStr | None = None
    stripe_webhook_secret_test: SecretStr | None = None
    stripe_webhook_secret_live: SecretStr | None = None
    stripe_connect_client_id_test: str | None = None
    stripe_connect_client_id_live: str | None = None
    # Where the SDK sends API and Connect OAuth calls (unset = Stripe; tests use a local peer).
    stripe_api_base: str | None = None
    stripe_connect_base: str | None = None
    stripe_max_network_retries: int = Field(2, ge=0, le=5)
    stripe_timeout_seconds: float = Field(30.0, gt=0)
    stripe_webhook_tolerance_seconds: int = Field(300, ge=1)
    # Connect: where Stripe sends the developer back (unset = this server's callback URL),
    # and where the callback then sends them (the console).
    stripe_connect_redirect_uri: str | None = None
    stripe_connect_done_url: str = "/console/money?stripe=connected"
    # A local stand-in for Stripe (`tollhouse.stripe_sandbox`): the server starts it on
    # 127.0.0.1:STRIPE_SANDBOX_PORT and points every Stripe setting above at it, so checkout,
    # the portal, Connect and signed webhooks work offline. Production refuses to start with it.
    stripe_sandbox: bool = False
    # The port the Stripe sandbox listens on (127.0.0.1).
    stripe_sandbox_port: int = Field(12111, ge=1, le=65535)

    # Platform subscription: developers pay the operator (`billing.platform_plan`). Off while
    # PLATFORM_PRICE_ID is unset: no checkout (409 plan_not_offered), no gate, no metering.
    platform_price_id: str | None = Field(None, min_length=1, max_length=255)
    # Optional metered price for end users above the included ones, fed by the daily meter job.
    platform_overage_price_id: str | None = Field(None, min_length=1, max_length=255)
    platform_meter_event_name: str = Field("tollhouse_live_end_users", min_length=1)
    # The operator's Stripe mode the plan is sold in (its price ids belong to that mode).
    platform_stripe_mode: Literal["test", "live"] = "live"
    # Free days: Stripe's trial on a first subscription, and the window from sign-up during
    # which a platform that never subscribed may use its keys.
    platform_trial_days: int = Field(14, ge=0, le=365)
    platform_included_end_users: int = Field(2000, ge=0)
    # The plan's monthly price, for the operator's MRR estimate (/admin/api/platforms).
    platform_price_cents: int = Field(1900, ge=0)
    # Shown as the estimate only; Stripe bills the overage from its own price.
    platform_overage_cents_per_user: float = Field(3.0, ge=0)
    # A lapsed (canceled/unpaid, or never-subscribed past its trial) platform keeps working
    # this long, then its keys answer 403 subscription_expired.
    platform_grace_days: int = Field(7, ge=0, le=365)
    # Where checkout and the portal send the developer back (relative = on this server).
    platform_return_url: str = "/console/"
    platform_meter_interval_seconds: float = Field(86400.0, gt=0)

    # Scene generation (`generation/`). Providers, tried in this order when a preset's own
    # is down: Google (GOOGLE_API_KEY), OpenRouter (OPENROUTER_API_KEY), and any
    # OpenAI-compatible server (LLM_BASE_URL: vLLM, Ollama, llama.cpp, LM Studio).
    google_api_key: SecretStr | None = None
    # Where google-genai sends requests (unset = Google; tests use a local Gemini peer).
    google_api_base_url: str | None = None
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    # The compatible server's models: every text / image call goes to these when set.
    llm_model: str | None = None
    llm_image_model: str | None = None
    llm_timeout_seconds: float = Field(120.0, gt=0)
    # Retries per provider on 429, 5xx and network errors, then the next provider.
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_retry_backoff_seconds: float = Field(0.5, ge=0)
    # Outbound requests per minute per provider (0 = unlimited).
    llm_requests_per_minute: int = Field(600, ge=0)
    # Presets (JSON, by name) merged over the built-in hd, balanced, hyper, gemini3.
    generation_presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # model_policy=permissive without an explicit model: these open-weight models.
    permissive_text_model: str = "meta-llama/llama-4-scout"
    permissive_image_model: str = "black-forest-labs/flux.2-pro"
    # A generation still running after this is failed and refunded (sync answers 504).
    generation_timeout_seconds: float = Field(300.0, gt=0)
    # Character interactions answer within these or fail with 408 (the hold is released).
    chat_timeout_seconds: float = Field(60.0, gt=0)
    # A dialog still unfinished after this is 408 and its hold released.
    dialog_timeout_seconds: float = Field(120.0, gt=0)
    # A survey still unanswered after this is 408 and its hold released.
    survey_timeout_seconds: float = Field(60.0, gt=0)
    # SSE comment sent while a step runs, so proxies keep the stream open.
    sse_keepalive_seconds: float = Field(15.0, gt=0)
    # How long a finished generation's events can still be replayed.
    generation_events_retention_seconds: int = Field(600, ge=1)
    # Public pages of public timepoints: SHARE_URL_BASE + "/" + slug.
    share_url_base: str | None = None
    # This service's public address, for absolute image URLs (unset: the address each
    # request came in on).
    public_base_url: str | None = None
    # /api/v1/eval for every caller (each pays `eval_compare`), not only operators.
    eval_open_to_users: bool = False
    # How long /api/v1/models keeps the providers' model catalogues.
    models_cache_seconds: float = Field(3600.0, ge=0)
    # Private timepoints' image URLs are signed and stop working after this long.
    image_url_ttl_seconds: int = Field(3600, ge=60, le=7 * 86400)
    # async generate's callback_url: attempts and the first backoff (doubling).
    callback_max_attempts: int = Field(4, ge=1, le=10)
    callback_backoff_seconds: float = Field(1.0, ge=0)
    callback_timeout_seconds: float = Field(10.0, gt=0)

    # Object storage for images: local files under the data dir, or an S3-compatible bucket
    # (S3, R2, MinIO) when S3_BUCKET is set.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "auto"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_key_prefix: str = ""

    # Assets (/api/assets): images only, sniffed from their bytes; per file and per project.
    asset_max_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    # The bytes of assets one project may keep (uploads past it are 413).
    asset_quota_bytes: int = Field(100 * 1024 * 1024, ge=1024)

    # Hosted end-user pages (/signup, /signin, /account, /refresh per publishable key).
    # Sign-in and sign-up attempts per minute: per email address (5x that per client address,
    # 50x per project, so one project's crowd cannot starve another's).
    hosted_auth_attempts_per_minute: int = Field(10, ge=1, le=1000)
    # How long a browser stays signed in to a project's hosted pages.
    hosted_session_hours: int = Field(24, ge=1, le=24 * 90)
    # Mail (verification, password reset): SMTP when SMTP_HOST is set; otherwise messages go to
    # the local outbox, shown at /dev/mail outside production.
    smtp_host: str | None = None
    # The SMTP server's port.
    smtp_port: int = Field(587, ge=1, le=65535)
    # SMTP login (unset: no authentication).
    smtp_username: str | None = None
    # SMTP password (a secret: never printed).
    smtp_password: SecretStr | None = None
    # Upgrade the SMTP connection with STARTTLS.
    smtp_starttls: bool = True
    # The From address of the mail we send.
    smtp_from: str = "Tollhouse <no-reply@localhost>"

    @field_validator("cors_origins", "apple_root_certificates", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator(
        "jwt_secret_key",
        "tollhouse_secret_pepper",
        "flash_service_key",
        "gateway_signing_secret",
        "admin_api_key",
        "billing_api_key",
        "stripe_secret_key_test",
        "stripe_secret_key_live",
        "stripe_webhook_secret_test",
        "stripe_webhook_secret_live",
        "google_api_key",
        "openrouter_api_key",
        "llm_api_key",
        "s3_secret_access_key",
        "smtp_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def private_urls_allowed(self) -> bool:
        """ALLOW_PRIVATE_UPSTREAMS, defaulting to on for a development machine (its upstreams
        are local) and off everywhere else."""
        if self.allow_private_upstreams is not None:
            return self.allow_private_upstreams
        return self.tollhouse_env == "development"

    @property
    def logs_as_json(self) -> bool:
        if self.log_json is not None:
            return self.log_json
        return self.is_production or not sys.stdout.isatty()

    @property
    def is_production(self) -> bool:
        return self.tollhouse_env == "production"

    @property
    def effective_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.tollhouse_data_dir / 'tollhouse.db'}"
        return normalize_database_url(url)

    @property
    def is_embedded_database(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def external_issuers(self) -> list[IssuerConfig]:
        """Configured issuers plus Apple and Google when their client ids are set."""
        issuers = list(self.jwt_issuers)
        if self.apple_bundle_id:
            issuers.append(apple_issuer(self))
        if self.google_oauth_client_id:
            issuers.append(google_issuer(self))
        return issuers

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


APPLE_ISSUER = "https://appleid.apple.com"
GOOGLE_ISSUER = "https://accounts.google.com"


def apple_issuer(settings: Settings) -> IssuerConfig:
    return IssuerConfig(
        issuer=APPLE_ISSUER,
        jwks_url=settings.apple_jwks_url,
        audience=settings.apple_bundle_id or "",
        external_id_prefix="apple:",
        algorithms=["RS256", "ES256"],
    )


def google_issuer(settings: Settings) -> IssuerConfig:
    return IssuerConfig(
        issuer=GOOGLE_ISSUER,
        aliases=["accounts.google.com"],
        jwks_url=settings.google_jwks_url,
        audience=settings.google_oauth_client_id or "",
        external_id_prefix="google:",
        algorithms=["RS256"],
    )


def normalize_database_url(url: str) -> str:
    """Accept the plain URLs people paste and pick the async driver for them."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def default_home() -> Path:
    """The project's `data/` when running from a checkout (whatever the working directory),
    else `data/` under the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "data"
    return Path("data").resolve()


SecretsMode = Literal["create", "existing", "skip"]


def load_settings(*, secrets_mode: SecretsMode = "create", **overrides: Any) -> Settings:
    """The settings, or a ConfigError that names the setting and says what to do.

    Development secrets missing from the environment come from the home: `create` makes them
    once (the server), `existing` refuses to invent them (the CLI: new ones would not match
    the running server's), `skip` leaves them unset (commands that never sign anything)."""
    try:
        settings = Settings(**overrides)
    except (ValidationError, SettingsError) as exc:
        raise ConfigError(describe_settings_error(exc)) from None
    if settings.is_production:
        check_production_secrets(settings)
        return settings
    if secrets_mode == "skip":
        return settings
    return fill_dev_secrets(settings, create=secrets_mode == "create")


def _env_name(field: str) -> str:
    return HOME_ENV if field == "tollhouse_data_dir" else field.upper()


def _default_of(field: str) -> str:
    info = Settings.model_fields.get(field)
    default = None if info is None else info.get_default(call_default_factory=True)
    return "unset" if default is None else json.dumps(default, default=str)


def describe_settings_error(exc: ValidationError | SettingsError) -> str:
    """One line per bad setting: its name, what is wrong, and what to do."""
    if isinstance(exc, SettingsError):
        # pydantic-settings says: error parsing value for field "credit_costs" from source ...
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        return (
            f"{_env_name(field)} is not valid JSON{cause}: fix the value or unset it "
            f"(default {_default_of(field)})."
        )
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        shown = error.get("input")
        where = ".".join(str(part) for part in error["loc"][1:])
        value = "" if where or shown is None else f"={shown}"
        lines.append(
            f"{_env_name(field)}{value}: {error['msg']}{f' (at {where})' if where else ''}; "
            f"fix it or unset it (default {_default_of(field)})."
        )
    return "\n".join(lines)


def check_production_secrets(settings: Settings) -> None:
    problems: list[str] = []
    for name in REQUIRED_SECRETS:
        value = settings.secret(name)
        if value is None:
            problems.append(f"{name.upper()} is not set")
        elif weak_reason := _weakness(value):
            problems.append(f"{name.upper()} {weak_reason}")
    for name in OPTIONAL_SECRETS:
        value = settings.secret(name)
        if value is not None and (weak_reason := _weakness(value)):
            problems.append(f"{name.upper()} {weak_reason}")
    if settings.stripe_sandbox:
        problems.append("STRIPE_SANDBOX is on (the local Stripe stand-in is for development only)")
    if problems:
        raise ConfigError("refusing to start with TOLLHOUSE_ENV=production: " + "; ".join(problems))


def _weakness(value: str) -> str | None:
    if value.strip().lower() in WELL_KNOWN_SECRETS:
        return "is a well-known default value"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def fill_dev_secrets(settings: Settings, *, create: bool = True) -> Settings:
    """Give a dev machine stable secrets without asking: generated once, kept in the home."""
    missing = [name for name in GENERATED_SECRETS if getattr(settings, name) is None]
    if not missing:
        return settings
    stored = read_dev_secrets(settings.tollhouse_data_dir, create=create)
    absent = [name for name in missing if name not in stored]
    if absent:
        raise ConfigError(
            f"No development secrets in {settings.tollhouse_data_dir / SECRETS_FILE} "
            f"({', '.join(name.upper() for name in absent)}): start the server once "
            f"(`make run`) to create them, or set {HOME_ENV} to the server's home."
        )
    return settings.model_copy(update={name: SecretStr(stored[name]) for name in missing})


def read_dev_secrets(data_dir: Path, *, create: bool) -> dict[str, str]:
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    absent = [name for name in GENERATED_SECRETS if name not in stored]
    if absent and create:
        stored.update({name: secrets.token_urlsafe(32) for name in absent})
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written with 0600 from the start so the secrets are never world-readable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle, indent=2)
    return stored
