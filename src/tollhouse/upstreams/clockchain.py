"""The clockchain (flash-contract §1.8, §9) behind /api/v1/clockchain/*.

`/api/v1/clockchain/{path}` → `{CLOCKCHAIN_SERVICE_URL}/api/v1/{path}`, for the routes its
policy lists (`CLOCKCHAIN_ROUTES`, default `DEFAULT_ROUTES`): the public reads and the paid
writes, nothing administrative. Calls carry `X-Service-Key: CLOCKCHAIN_SERVICE_KEY` (and
`CLOCKCHAIN_WRITER_TOKEN` as a bearer token on writes), except the reads the clockchain serves
to anonymous callers, which go as anonymous so private moments stay private. Its answers are
JSON: anything else is 502 `upstream_malformed`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

import aiohttp

from tollhouse.config import Settings, UpstreamRouteRule
from tollhouse.kit.forwarding import Timeouts, Upstream, UpstreamConfig
from tollhouse.upstreams.policy import RoutePolicy
from tollhouse.upstreams.relay import Relay

PREFIX = "/api/v1/clockchain"
NAME = "clockchain"


def _read(
    path: str, access: Literal["anyone", "user"] = "user", *, anonymous: bool = False
) -> UpstreamRouteRule:
    return UpstreamRouteRule(methods=["GET"], path=path, access=access, credentials=not anonymous)


def _paid_write(path: str, price: str) -> UpstreamRouteRule:
    return UpstreamRouteRule(methods=["POST"], path=path, access="user", price=price)


# The research's list (flash-contract §1.8): browse, search, today, random, neighbors, stats,
# moments; ingest and index paid. Not listed, so 404 here: generate, jobs, publish,
# bulk-generate, expand-once, propose/challenge/verify/reconcile, agents, mcp.
DEFAULT_ROUTES: tuple[UpstreamRouteRule, ...] = (
    # Served to anyone upstream; sent without our key (with it, private moments show).
    _read("moments/**", "anyone", anonymous=True),
    _read("stats", "anyone", anonymous=True),
    _read("browse/**"),
    _read("search"),
    _read("today"),
    _read("random"),
    _read("graph/neighbors/**"),
    _paid_write("ingest/subgraph", "clockchain_ingest"),
    _paid_write("ingest/tdf", "clockchain_ingest"),
    _paid_write("index", "clockchain_index"),
)


def relay(settings: Settings, timeouts: Timeouts, known_costs: Collection[str]) -> Relay | None:
    """The clockchain's relay, or None when it is switched off or not configured."""
    url = settings.clockchain_service_url
    if not settings.clockchain_enabled or not url:
        return None
    key = settings.secret("clockchain_service_key")
    config = UpstreamConfig(
        name=NAME,
        base_url=f"{url.rstrip('/')}/api/v1",
        inject_headers={"X-Service-Key": key} if key else {},
        timeouts=timeouts,
    )
    rules = settings.clockchain_routes if settings.clockchain_routes is not None else DEFAULT_ROUTES
    return Relay(
        prefix=PREFIX,
        upstream=Upstream(config),
        policy=RoutePolicy.compile(NAME, rules, known_costs),
        writer_token=settings.secret("clockchain_writer_token"),
        promises_json=True,
    )


async def healthy(clockchain: Upstream, settings: Settings) -> bool:
    """The clockchain's root `/health` answers 200 within the health timeout."""
    assert settings.clockchain_service_url is not None
    try:
        async with clockchain.session.get(
            f"{settings.clockchain_service_url.rstrip('/')}/health",
            timeout=aiohttp.ClientTimeout(total=settings.upstream_health_timeout_seconds),
            allow_redirects=False,
        ) as response:
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
