"""create_app(settings): routers, middleware, error handlers, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from tollhouse import __version__, system, wiring
from tollhouse.billing import cart_routes
from tollhouse.billing.apple import routes as apple_routes
from tollhouse.billing.gateway import routes as billing_routes
from tollhouse.billing.stripe import routes as stripe_routes
from tollhouse.config import Settings, load_settings
from tollhouse.console import routes as console_routes
from tollhouse.db.engine import Database
from tollhouse.identity import routes as identity_routes
from tollhouse.kit.errors import install_error_handlers
from tollhouse.kit.logging import configure_logging
from tollhouse.kit.metrics import HttpMetrics
from tollhouse.kit.middleware import BodyLimitMiddleware, RequestContextMiddleware
from tollhouse.ledger import routes as ledger_routes
from tollhouse.platform_api import routes as platform_routes

log = structlog.get_logger("tollhouse")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    database = Database(
        settings.effective_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=settings.database_pool_pre_ping,
    )
    metrics = HttpMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with database.session() as session:
            home = await wiring.home_project_id(session, settings)
        app.state.identity = wiring.identity_context(settings, home)
        app.state.ledger = wiring.ledger_context(settings)
        app.state.rate_limiter = wiring.rate_limiter(settings)
        app.state.stripe = wiring.stripe_gateway(settings)
        jobs = wiring.background_jobs(settings, database)
        jobs.start()
        log.info(
            "started", version=__version__, database=database.backend, env=settings.tollhouse_env
        )
        try:
            yield
        finally:
            await jobs.stop()
            await app.state.rate_limiter.close()
            await app.state.stripe.close()
            await database.dispose()

    app = FastAPI(
        title="Tollhouse",
        version=__version__,
        description="The front door of paid APIs: auth, credits, quotas, billing, upstreams.",
        lifespan=lifespan,
    )
    app.state.database = database
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(identity_routes.users)
    app.include_router(identity_routes.auth)
    app.include_router(ledger_routes.credits)
    app.include_router(ledger_routes.internal)
    app.include_router(platform_routes.router)
    app.include_router(billing_routes.router)
    app.include_router(apple_routes.webhook)
    app.include_router(cart_routes.router)
    app.include_router(console_routes.router)
    app.include_router(stripe_routes.platform)
    app.include_router(stripe_routes.webhook)
    app.add_api_route("/api/v1/openapi.json", lambda: app.openapi(), include_in_schema=False)

    # Added innermost first: CORS ends up outermost, so preflights never reach auth.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
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
