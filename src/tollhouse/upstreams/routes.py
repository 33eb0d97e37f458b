"""Forwarding routes: the clockchain, the operator's upstreams, developers' APIs under /gw.

Kept thin: one catch-all route per upstream hands the request to its relay (`relay.py`: path,
policy, access, price, forward) or, under /gw, to the project's routes (`platform.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request, Response

from tollhouse.config import Settings
from tollhouse.db.session import SessionDep
from tollhouse.kit.errors import ServiceUnavailable
from tollhouse.metering.guards import RateLimitedEndUser
from tollhouse.upstreams import clockchain, platform
from tollhouse.upstreams.context import upstream_context
from tollhouse.upstreams.relay import Relay, relay

ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


def _relay_router(prefix: str, relay_of: Callable[[Request], Relay]) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["upstreams"])

    async def forward(request: Request, session: SessionDep) -> Response:
        return await relay(request, session, relay_of(request))

    # Catch-all proxies: their paths are the upstream's, not ours to document.
    router.add_api_route(
        "/{path:path}",
        forward,
        methods=ALL_METHODS,
        name=f"forward:{prefix}",
        include_in_schema=False,
    )
    return router


def _clockchain(request: Request) -> Relay:
    served = upstream_context(request).clockchain
    assert served is not None
    return served


def operator_routers(settings: Settings) -> list[APIRouter]:
    """One router per UPSTREAMS entry, at /api/v1/upstreams/{name}/*."""
    routers = []
    for spec in settings.upstreams:

        def relay_of(request: Request, name: str = spec.name) -> Relay:
            return upstream_context(request).operators[name]

        routers.append(_relay_router(f"/api/v1/upstreams/{spec.name}", relay_of))
    return routers


gateway = APIRouter(tags=["upstreams"])


@gateway.api_route("/gw/{project_id}/{path:path}", methods=ALL_METHODS, include_in_schema=False)
async def developer_upstream(
    request: Request, project_id: str, caller: RateLimitedEndUser, session: SessionDep
) -> Response:
    """An end user calling a developer's API: rate limit, quota, forward, refund on failure."""
    return await platform.forward(request, session, caller, project_id)


class ClockchainNotConfigured(ServiceUnavailable):
    code = "upstream_not_configured"


unconfigured_clockchain = APIRouter(tags=["upstreams"])


@unconfigured_clockchain.api_route(
    "/api/v1/clockchain/{path:path}", methods=ALL_METHODS, include_in_schema=False
)
async def clockchain_not_configured(request: Request) -> Response:
    """Say what to set instead of a bare 404 (nothing is charged or forwarded)."""
    if not upstream_context(request).settings.clockchain_enabled:
        raise ClockchainNotConfigured("The clockchain is turned off (CLOCKCHAIN_ENABLED=false).")
    raise ClockchainNotConfigured(
        "The clockchain is not configured: set CLOCKCHAIN_SERVICE_URL (and CLOCKCHAIN_SERVICE_KEY)."
    )


def include(app: FastAPI, settings: Settings) -> None:
    if settings.clockchain_enabled and settings.clockchain_service_url:
        app.include_router(_relay_router(clockchain.PREFIX, _clockchain))
    else:
        app.include_router(unconfigured_clockchain)
    for router in operator_routers(settings):
        app.include_router(router)
    app.include_router(gateway)


async def health(request: Request) -> dict[str, bool]:
    """Each checked upstream's reachability, for /health/deep."""
    context = upstream_context(request)
    if context.clockchain is None:
        return {}
    healthy = await clockchain.healthy(context.clockchain.upstream, context.settings)
    return {clockchain.NAME: healthy}
