"""create_app(settings, role): routers, middleware, error handlers, lifespan.

Roles (`tollhouse serve --role`): `all` and `gateway` serve everything, with billing
in-process unless BILLING_SERVICE_URL names a billing process to forward /api/v1/billing/*
to; `all` also runs background jobs (generation runs, sweepers), `gateway` only enqueues
them for `tollhouse worker` (it needs JOB_QUEUE=redis); `billing` serves billing's routes
(public and /internal/billing/*) and reaches the ledger through the gateway's
/internal/credits/* at GATEWAY_INTERNAL_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, get_args

import httpx
import structlog
from fastapi import Depends, FastAPI

from tollhouse import __version__, openapi, system, wiring
from tollhouse.assets import routes as asset_routes
from tollhouse.billing import cart_routes, proxy
from tollhouse.billing import credits as billing_credits
from tollhouse.billing.apple import routes as apple_routes
from tollhouse.billing.gateway import routes as billing_routes
from tollhouse.billing.gateway.service import GatewayBilling
from tollhouse.billing.stripe import routes as stripe_routes
from tollhouse.config import ConfigError, Settings, load_settings
from tollhouse.console import routes as console_routes
from tollhouse.db.engine import Database
from tollhouse.generation import discovery_routes, eval_routes, model_routes
from tollhouse.generation import privacy as _generation_privacy  # noqa: F401 - export section
from tollhouse.generation import routes as generation_routes
from tollhouse.identity import routes as identity_routes
from tollhouse.interactions import privacy as _interaction_privacy  # noqa: F401 - export section
from tollhouse.interactions import routes as interaction_routes
from tollhouse.kit.cors import CORSMiddleware
from tollhouse.kit.drain import Drain
from tollhouse.kit.error_handlers import install_error_handlers
from tollhouse.kit.hot_routes import HotRoutes
from tollhouse.kit.input_guards import refuse_nul_characters
from tollhouse.kit.logging import configure_logging
from tollhouse.kit.metrics import HttpMetrics
from tollhouse.kit.middleware import BodyLimitMiddleware, RequestContextMiddleware
from tollhouse.kit.queue import JobQueue
from tollhouse.kit.shedding import LoadShedding
from tollhouse.ledger import routes as ledger_routes
from tollhouse.mcp.server import PATH as MCP_PATH
from tollhouse.mcp.server import McpEndpoint
from tollhouse.metering import caches as metering_caches
from tollhouse.platform_api import hot as platform_hot
from tollhouse.platform_api import oauth as platform_oauth
from tollhouse.platform_api import operator as platform_operator
from tollhouse.platform_api import routes as platform_routes
from tollhouse.temporal import routes as temporal_routes
from tollhouse.upstreams import hot as upstream_hot
from tollhouse.upstreams import routes as upstream_routes
from tollhouse.web import docs as web_docs
from tollhouse.web import routes as web_routes

log = structlog.get_logger("tollhouse")


Role = Literal["all", "gateway", "billing"]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_ENV = "TOLLHOUSE_ROLE"


def _role(role: str | None) -> Role:
    role = role or os.environ.get(ROLE_ENV) or "all"
    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}: one of {', '.join(ROLES)}.")
    return role


def _billing_key(settings: Settings, needed_by: str) -> str:
    key = settings.secret("billing_api_key")
    if key is None:
        raise ConfigError(f"{needed_by} needs BILLING_API_KEY.")
    return key


def app_queue(settings: Settings, role: Role) -> JobQueue:
    """The job queue; `gateway` runs no jobs, so it needs one that workers share."""
    queue = wiring.job_queue(settings)
    if role == "gateway" and not queue.shared:
        raise ConfigError(
            "--role gateway runs no background jobs: set JOB_QUEUE=redis (and REDIS_URL) and "
            "run `tollhouse worker`, or serve with --role all."
        )
    return queue


def create_app(
    settings: Settings | None = None,
    role: str | None = None,
    *,
    peer_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`peer_transport` carries billing's calls to the gateway's /internal/credits, for tests."""
    settings = settings or load_settings()
    sandbox = None
    if settings.stripe_sandbox:  # the local Stripe stand-in (development only)
        from tollhouse.stripe_sandbox.beside import BesideSandbox

        sandbox = BesideSandbox.prepare(settings)
        settings = sandbox.settings
    role = _role(role)
    forwards_billing = role != "billing" and settings.billing_service_url is not None
    if role == "billing" and not settings.gateway_internal_url:
        raise ConfigError("--role billing needs GATEWAY_INTERNAL_URL (the gateway's address).")
    configure_logging(settings.log_level, json=settings.logs_as_json)
    database = Database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=settings.database_pool_pre_ping,
    )
    metrics = HttpMetrics(settings.replica_name)
    queue = app_queue(settings, role)
    mcp = McpEndpoint() if role != "billing" else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database.session() as session:
            home = await wiring.home_project_id(session, settings)
        app.state.identity = wiring.identity_context(settings, home)
        invalidation = app.state.identity.invalidation
        await invalidation.start()
        stop_publishing_tables = metering_caches.on_tables_committed(
            lambda tables: invalidation.publish("table", tables)
        )
        app.state.ledger = wiring.ledger_context(settings)
        app.state.rate_limiter = wiring.rate_limiter(settings)
        app.state.stripe = wiring.stripe_gateway(settings)
        if sandbox is not None:
            await sandbox.start(app)
            app.state.stripe_sandbox = sandbox
        app.state.upstreams = wiring.upstream_context(settings)
        app.state.assets = wiring.asset_context(settings)
        app.state.mailer = wiring.mailer(settings)
        if role == "billing":
            assert settings.gateway_internal_url is not None
            app.state.gateway_billing = GatewayBilling.from_settings(
                settings,
                billing_credits.HttpCredits(
                    settings.gateway_internal_url,
                    _billing_key(settings, "--role billing"),
                    timeout=settings.billing_timeout_seconds,
                    transport=peer_transport,
                ),
            )
        if forwards_billing:
            assert settings.billing_service_url is not None
            app.state.billing_proxy = proxy.BillingProxy(
                settings.billing_service_url,
                _billing_key(settings, "BILLING_SERVICE_URL"),
                timeout=settings.billing_timeout_seconds,
            )
        generation = None
        if role != "billing":
            generation = app.state.generation = wiring.generations(
                settings, database, metrics.registry, queue
            )
            wiring.background_tasks(generation, app.state.upstreams)
        app.state.meter = wiring.meter(settings, database)
        wiring.periodic_jobs(queue, settings, database, generation, app.state.assets)
        key_usage = app.state.identity.key_usage

        async def record_key_usage() -> None:  # every second: not worth a log line each time
            await key_usage.flush(database)

        jobs = wiring.process_jobs(settings, app.state.meter, record_key_usage)
        jobs.start()
        # `gateway` only enqueues: `tollhouse worker` processes run the jobs (and billing's
        # periodic jobs run where the gateway's do).
        await queue.start(run_jobs=role == "all")
        drain: Drain = app.state.drain
        restore_sigterm = drain.on_sigterm()
        if generation is not None:
            drain.on_begin(generation.hand_off)
        mcp_running = contextlib.AsyncExitStack()
        if mcp is not None:
            await mcp_running.enter_async_context(mcp.running())
        log.info(
            "started", version=__version__, database=database.backend, env=settings.tollhouse_env
        )
        try:
            yield
        finally:
            restore_sigterm()
            if generation is not None and drain.draining:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.drain_timeout_seconds):
                        await generation.finish_runs()
            await mcp_running.aclose()
            await queue.stop()
            await jobs.stop()
            await key_usage.flush(database)
            await app.state.meter.close()
            stop_publishing_tables()
            await invalidation.stop()
            if generation is not None:
                await generation.close()
            await app.state.rate_limiter.close()
            await app.state.stripe.close()
            if sandbox is not None:
                await sandbox.stop()
            await app.state.upstreams.close()
            await app.state.assets.close()
            if role == "billing":
                await app.state.gateway_billing.credits.close()
            if forwards_billing:
                await app.state.billing_proxy.close()
            await database.dispose()

    app = FastAPI(
        title="Tollhouse",
        version=__version__,
        description="The front door of paid APIs: auth, credits, quotas, billing, upstreams.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_characters)],
        # Served offline by web/docs.py instead of FastAPI's CDN-loading pages.
        docs_url=None,
        redoc_url=None,
    )
    app.state.database = database
    app.state.metrics = metrics
    app.state.drain = Drain()
    install_error_handlers(app)
    openapi.install(app)
    web_docs.include(app)
    app.include_router(system.router)
    if role == "billing":
        app.include_router(billing_routes.router)
        app.include_router(billing_routes.internal)
        app.include_router(apple_routes.webhook)
    else:
        _include_gateway(app, settings, forwards_billing)
    if mcp is not None:
        app.mount(MCP_PATH, mcp)
    app.add_api_route("/api/v1/openapi.json", lambda: app.openapi(), include_in_schema=False)

    # Added innermost first: CORS ends up outermost, so preflights never reach auth.
    if role != "billing":  # the metered calls (Platform API, /gw), without the router's scan
        app.add_middleware(
            HotRoutes,
            routes=platform_hot.ROUTES,
            prefixes=upstream_hot.PREFIXES,
            guards=[refuse_nul_characters],
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # An asset upload may be larger than other bodies (base64 adds a third).
        overrides=((asset_routes.UPLOAD_PATH, settings.asset_max_bytes * 4 // 3 + 64 * 1024),),
    )
    if settings.max_concurrent_requests:
        app.add_middleware(LoadShedding, max_in_flight=settings.max_concurrent_requests)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    if settings.cors_enabled:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    return app


def _include_gateway(app: FastAPI, settings: Settings, forwards_billing: bool) -> None:
    app.include_router(identity_routes.users)
    app.include_router(identity_routes.auth)
    app.include_router(ledger_routes.credits)
    app.include_router(ledger_routes.internal)
    app.include_router(billing_credits.internal)
    app.include_router(platform_routes.router)
    if forwards_billing:
        app.include_router(proxy.router)
    elif settings.billing_enabled:
        app.include_router(billing_routes.router)
        app.include_router(apple_routes.webhook)
    app.include_router(cart_routes.router)
    app.include_router(console_routes.router)
    app.include_router(stripe_routes.platform)
    app.include_router(stripe_routes.webhook)
    upstream_routes.include(app, settings)
    app.include_router(generation_routes.router)
    app.include_router(generation_routes.mine)
    app.include_router(interaction_routes.router)
    app.include_router(temporal_routes.router)
    app.include_router(asset_routes.router)
    app.include_router(platform_oauth.router)
    app.include_router(platform_operator.router)
    web_routes.include(app)
    app.include_router(model_routes.router)
    app.include_router(eval_routes.router)
    app.include_router(discovery_routes.entity_routes)
    app.include_router(discovery_routes.content_routes)
    app.include_router(discovery_routes.internal)
