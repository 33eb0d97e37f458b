"""Forwarding routes: the clockchain, the operator's upstreams, developers' APIs under /gw.

Kept thin: each route authenticates, charges (the ledger's hold or the quota) and hands the
request to kit's forwarding engine. Routes are built from settings (see `include`).
No `from __future__ import annotations` here: the charge dependency of a route is built per
upstream and must be evaluated where the handler is defined.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from tollhouse.config import Settings
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import GatewayCaller
from tollhouse.kit.errors import ServiceUnavailable
from tollhouse.kit.forwarding import Settle, Upstream
from tollhouse.ledger.charging import Charge, Cost
from tollhouse.metering.guards import RateLimitedEndUser
from tollhouse.upstreams import clockchain, platform
from tollhouse.upstreams.context import identity_of, upstream_context

ALL_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
# The ledger's transaction type for calls charged through an upstream.
TRANSACTION_TYPE = "api_spend"


def _free_charge() -> Charge:
    return Charge(amount=0)


def _charge_dependency(cost_key: str | None) -> Any:
    if cost_key is None:
        return Depends(_free_charge)
    return Cost(cost_key, TRANSACTION_TYPE)


def charge_settler(charge: Charge) -> Settle:
    """Capture the hold when the upstream did its part, release it otherwise."""
    charge.defer()

    async def settle(ok: bool) -> None:
        await (charge.capture() if ok else charge.release())

    return settle


def _add_forwarding_route(
    router: APIRouter,
    path: str,
    methods: list[str],
    upstream_of: Any,
    *,
    cost_key: str | None,
    promises_json: bool,
) -> None:
    """`router.prefix + path` forwarded to `upstream_of(request)` (the prefix stripped)."""
    ChargeDep = Annotated[Charge, _charge_dependency(cost_key)]
    prefix = router.prefix

    async def forward(request: Request, caller: GatewayCaller, charge: ChargeDep) -> Response:
        upstream: Upstream = upstream_of(request)
        return await upstream.forward(
            request,
            request.scope["path"].removeprefix(prefix),
            identity=identity_of(caller),
            settle=charge_settler(charge),
            promises_json=promises_json,
        )

    # Catch-all proxies: their paths are the upstream's, not ours to document.
    router.add_api_route(
        path, forward, methods=methods, name=f"forward:{prefix}{path}", include_in_schema=False
    )


def _clockchain(request: Request) -> Upstream:
    upstream = upstream_context(request).clockchain
    assert upstream is not None
    return upstream


def clockchain_router() -> APIRouter:
    router = APIRouter(prefix=clockchain.PREFIX, tags=["clockchain"])
    for path, methods, cost_key in (
        ("/ingest/{path:path}", ["POST"], "clockchain_ingest"),
        ("/index", ["POST"], "clockchain_index"),
        ("/{path:path}", ALL_METHODS, None),
    ):
        _add_forwarding_route(
            router, path, methods, _clockchain, cost_key=cost_key, promises_json=True
        )
    return router


def operator_routers(settings: Settings) -> list[APIRouter]:
    """One router per UPSTREAMS entry, at /api/v1/upstreams/{name}/*."""
    routers = []
    for spec in settings.upstreams:

        def upstream_of(request: Request, name: str = spec.name) -> Upstream:
            return upstream_context(request).operators[name].upstream

        router = APIRouter(prefix=f"/api/v1/upstreams/{spec.name}", tags=["upstreams"])
        _add_forwarding_route(
            router,
            "/{path:path}",
            spec.methods,
            upstream_of,
            cost_key=spec.cost_key,
            promises_json=False,
        )
        routers.append(router)
    return routers


gateway = APIRouter(tags=["upstreams"])


@gateway.api_route("/gw/{project_id}/{path:path}", methods=ALL_METHODS, include_in_schema=False)
async def developer_upstream(
    request: Request, project_id: str, path: str, caller: RateLimitedEndUser, session: SessionDep
) -> Response:
    """An end user calling a developer's API: rate limit, quota, forward, refund on failure."""
    return await platform.forward(request, session, caller, project_id, path)


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
        app.include_router(clockchain_router())
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
    return {clockchain.NAME: await clockchain.healthy(context.clockchain, context.settings)}
