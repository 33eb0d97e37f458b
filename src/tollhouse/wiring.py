"""Builds each domain's context from settings, for the app and the CLI alike.

This is where higher domains plug into lower ones (the ledger's signup grant into identity's
user-created hooks), so no domain imports one above it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.assets import service as assets
from tollhouse.assets.routes import AssetContext
from tollhouse.billing import inventory, platform_plan
from tollhouse.billing.apple import renewals as apple_renewals
from tollhouse.billing.gateway import stripe_purchases
from tollhouse.billing.gateway.products import Catalogue
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.config import ConfigError, Settings
from tollhouse.db.engine import Database
from tollhouse.generation import entities
from tollhouse.generation.callbacks import CallbackSender
from tollhouse.generation.events import event_bus_from_url
from tollhouse.generation.llm.router import router_from_settings
from tollhouse.generation.runs import Generations
from tollhouse.identity.caller import IdentityContext
from tollhouse.identity.end_user_tokens import EndUserSigner, ProjectIssuers
from tollhouse.identity.issuers import IssuerRegistry
from tollhouse.identity.service import TokenSettings
from tollhouse.identity.user_cache import UserCache
from tollhouse.kit import idempotency
from tollhouse.kit.clock import utcnow
from tollhouse.kit.invalidation import Invalidation
from tollhouse.kit.jobs import PeriodicJobs
from tollhouse.kit.mail import Mailer, OutboxMailer, SmtpMailer
from tollhouse.kit.queue import JobQueue, job_queue_from_settings
from tollhouse.kit.storage import storage_from_settings
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.ledger import service as ledger
from tollhouse.ledger.context import LedgerContext
from tollhouse.ledger.costs import configured_costs
from tollhouse.ledger.signup import signup_grant
from tollhouse.metering import caches as metering_caches
from tollhouse.metering.meter import Meter, meter_from_settings
from tollhouse.metering.rate_limit import RateLimiter, rate_limiter_from_url
from tollhouse.tenancy.service import KeyMatch, ensure_home_project
from tollhouse.upstreams.clockchain_client import ClockchainClient
from tollhouse.upstreams.context import UpstreamContext
from tollhouse.upstreams.policy import PolicyError

log = structlog.get_logger("tollhouse")


async def home_project_id(session: AsyncSession, settings: Settings) -> str:
    project = await ensure_home_project(
        session, settings.home_platform_name, settings.home_project_name
    )
    return project.id


def identity_context(settings: Settings, home: str) -> IdentityContext:
    key_cache: TTLCache[str, KeyMatch] = TTLCache()
    user_cache = UserCache(settings.caller_cache_seconds)
    pepper = settings.secret("tollhouse_secret_pepper") or ""
    return IdentityContext(
        settings=settings,
        issuers=IssuerRegistry(
            settings.external_issuers(),
            cache_seconds=settings.jwks_cache_seconds,
            refetch_cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
            timeout_seconds=settings.jwks_timeout_seconds,
        ),
        home_project_id=home,
        token_settings=TokenSettings.from_settings(settings),
        user_cache=user_cache,
        end_user_signer=EndUserSigner(pepper),
        project_issuers=ProjectIssuers(
            cache_seconds=settings.jwks_cache_seconds,
            timeout_seconds=settings.jwks_timeout_seconds,
            cooldown=settings.jwks_refetch_cooldown_seconds,
        ),
        key_cache=key_cache,
        user_created_hooks=(signup_grant(settings.signup_credits, pepper),),
        invalidation=cache_invalidation(settings, key_cache, user_cache),
    )


def cache_invalidation(
    settings: Settings, key_cache: TTLCache[str, KeyMatch], user_cache: UserCache
) -> Invalidation:
    """What each kind of invalidation message drops here (sent across processes on Redis)."""
    invalidation = Invalidation(settings.redis_url, settings.invalidation_channel)
    invalidation.on(
        "key",
        lambda key_id: key_cache.discard_where(lambda m: key_id is None or m.key_id == key_id),
    )
    invalidation.on(
        "user", lambda user_id: user_cache.forget(None if user_id is None else uuid.UUID(user_id))
    )
    invalidation.on("table", metering_caches.clear_table)
    return invalidation


def stripe_gateway(settings: Settings) -> StripeGateway:
    """One Stripe client per configured mode (a mode without a key answers 503)."""
    return StripeGateway(settings)


def rate_limiter(settings: Settings) -> RateLimiter:
    """Memory (this process) by default; Redis when REDIS_URL is set (shared by replicas)."""
    return rate_limiter_from_url(settings.redis_url, settings.rate_limit_key_prefix)


def meter(settings: Settings, database: Database) -> Meter:
    """Quota counts in this process (leased from the database) or, with REDIS_URL, in Redis;
    written to the database every METERING_FLUSH_SECONDS."""
    return meter_from_settings(
        database,
        settings.redis_url,
        prefix=settings.metering_key_prefix,
        lease_units=settings.metering_lease_units,
    )


def upstream_context(settings: Settings) -> UpstreamContext:
    """The upstreams' pooled clients and route policies; a price must be a known cost."""
    try:
        return UpstreamContext.from_settings(settings, configured_costs(settings.credit_costs))
    except PolicyError as exc:
        raise ConfigError(f"Upstream route policy: {exc}") from exc


def asset_context(settings: Settings) -> AssetContext:
    """Assets on the same storage as images (files, or the S3_BUCKET), with their limits."""
    return AssetContext(
        storage_from_settings(settings),
        assets.AssetLimits(settings.asset_max_bytes, settings.asset_quota_bytes),
    )


def mailer(settings: Settings) -> Mailer:
    """SMTP when SMTP_HOST is set; else the local outbox (shown at /dev/mail)."""
    if not settings.smtp_host:
        if settings.is_production:
            log.warning(
                "no_smtp", message="SMTP_HOST is unset: mail stays in the mail_outbox table"
            )
        return OutboxMailer()
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_from,
        username=settings.smtp_username,
        password=settings.secret("smtp_password"),
        starttls=settings.smtp_starttls,
    )


async def purge_deleted_assets(database: Database, context: AssetContext) -> int:
    async with database.session() as session:
        return await assets.purge(session, context.storage)


def job_queue(settings: Settings) -> JobQueue:
    """This process's tasks (JOB_QUEUE=memory) or SAQ's Redis queue (JOB_QUEUE=redis)."""
    try:
        return job_queue_from_settings(
            settings.job_queue,
            settings.redis_url,
            settings.job_queue_name,
            heartbeat_seconds=settings.job_heartbeat_seconds,
            shutdown_grace_seconds=settings.drain_timeout_seconds,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def generations(
    settings: Settings, database: Database, registry: CollectorRegistry, queue: JobQueue
) -> Generations:
    """Scene generation: LLM providers (their metrics in `registry`), the event bus (Redis
    when REDIS_URL is set), image storage, callbacks; runs are jobs on `queue`."""
    return Generations(
        settings,
        database,
        router_from_settings(settings, registry=registry),
        event_bus_from_url(
            settings.redis_url,
            settings.events_key_prefix,
            settings.generation_events_retention_seconds,
        ),
        storage_from_settings(settings),
        CallbackSender(
            allow_private=settings.private_urls_allowed,
            max_attempts=settings.callback_max_attempts,
            backoff_seconds=settings.callback_backoff_seconds,
            timeout_seconds=settings.callback_timeout_seconds,
        ),
        queue,
    )


def background_tasks(generation: Generations, upstreams: UpstreamContext) -> None:
    """The task kinds (kit/tasks.py), registered alike where tasks are enqueued and run."""
    relay = upstreams.clockchain
    entities.register_reground(generation, ClockchainClient(relay.upstream) if relay else None)


def ledger_context(settings: Settings) -> LedgerContext:
    return LedgerContext(
        costs=configured_costs(settings.credit_costs),
        hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
        signup_credits=settings.signup_credits,
    )


async def sweep_expired_holds(database: Database) -> int:
    async with database.session() as session:
        return await ledger.release_expired_holds(session, utcnow())


async def sweep_expired_orders(database: Database) -> int:
    async with database.session() as session:
        return await inventory.release_expired(session, utcnow())


async def purge_idempotency_records(database: Database) -> int:
    async with database.session() as session:
        return await idempotency.purge_expired(session)


async def report_platform_usage(database: Database, settings: Settings) -> int:
    """The daily meter job; its own Stripe client, closed after each run."""
    gateway = StripeGateway(settings)
    try:
        async with database.session() as session:
            return await platform_plan.report_usage(session, gateway, settings, utcnow())
    finally:
        await gateway.close()


async def grant_subscription_months(database: Database, catalogue: Catalogue) -> int:
    async with database.session() as session:
        now = utcnow()
        apple = await apple_renewals.grant_due_months(session, catalogue, now)
        return apple + await stripe_purchases.grant_due_months(session, catalogue, now)


def process_jobs(
    settings: Settings, usage_meter: Meter | None, flush_key_usage: Callable[[], Awaitable[None]]
) -> PeriodicJobs:
    """What every serving process flushes of its own memory (counts, key usage), whatever its
    role: these never go on the shared queue."""
    jobs = PeriodicJobs()
    if usage_meter is not None:
        meter = usage_meter

        async def flush_usage() -> None:  # every second: no log line for a routine flush
            await meter.flush()

        jobs.every(settings.metering_flush_seconds, "flush_usage", flush_usage)
    jobs.every(settings.key_usage_flush_seconds, "record_key_usage", flush_key_usage)
    return jobs


def periodic_jobs(
    queue: JobQueue,
    settings: Settings,
    database: Database,
    generation: Generations | None = None,
    asset_storage: AssetContext | None = None,
) -> None:
    """Sweepers, purges and grants: on the job queue, so they run once per period wherever
    its workers are (they settle rows with conditional statements, so even two runs at once
    would release nothing twice)."""
    if asset_storage is not None:
        queue.every(
            settings.hold_sweep_interval_seconds,
            "purge_deleted_assets",
            lambda: purge_deleted_assets(database, asset_storage),
        )
    if generation is not None:
        queue.every(
            settings.hold_sweep_interval_seconds,
            "fail_abandoned_generations",
            generation.sweep_abandoned,
        )
        queue.every(
            settings.hold_sweep_interval_seconds, "purge_deleted_images", generation.purge_images
        )
        queue.every(
            settings.hold_sweep_interval_seconds,
            "fail_abandoned_tasks",
            generation.tasks.sweep_abandoned,
        )
    queue.every(
        settings.hold_sweep_interval_seconds,
        "release_expired_holds",
        lambda: sweep_expired_holds(database),
    )
    queue.every(
        settings.hold_sweep_interval_seconds,
        "release_expired_orders",
        lambda: sweep_expired_orders(database),
    )
    queue.every(3600, "purge_idempotency_records", lambda: purge_idempotency_records(database))
    queue.every(
        settings.subscription_grant_interval_seconds,
        "grant_yearly_subscription_months",
        lambda: grant_subscription_months(database, Catalogue.from_settings(settings)),
    )
    if settings.platform_price_id:
        queue.every(
            settings.platform_meter_interval_seconds,
            "report_platform_usage",
            lambda: report_platform_usage(database, settings),
        )
