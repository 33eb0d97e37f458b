"""Developers' APIs behind /gw/{project}/*: metering without an SDK call.

A developer registers `{path_prefix, upstream_url, methods, units}` for a project (Developer
API). An end user calls `/gw/{project}/{path}` with the project's key and an end-user token:
Tollhouse authenticates, applies the rate limit and counts `units` against the user's tier
quota (the same atomic `track` as `POST /api/data`), forwards to
`{upstream_url}/{the path after the prefix}`, and refunds the units unless the upstream's
answer passes the route's charge rule (`charge_on`, 2xx by default, `charge_rule.py`). The
path is the one normalised path of `kit/proxy_paths.py`, as for every upstream; bad paths
and headers are refused before anything is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast
from urllib.parse import urlsplit

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.engine import Database
from tollhouse.db.session import database
from tollhouse.identity.caller import Caller
from tollhouse.identity.models import User
from tollhouse.kit import proxy_paths
from tollhouse.kit.errors import Conflict, NotFound, TollhouseError
from tollhouse.kit.forwarding import Settle, prepare
from tollhouse.kit.proxy_paths import InvalidPath, ProxyPath
from tollhouse.kit.ssrf import check_public_url
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.metering.caches import cleared_on_commit
from tollhouse.metering.meter import Meter, meter_of
from tollhouse.metering.plans import effective_plan
from tollhouse.upstreams.charge_rule import ChargeRule
from tollhouse.upstreams.context import upstream_context
from tollhouse.upstreams.models import UpstreamRoute
from tollhouse.upstreams.relay import identity_of, request_path

METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
MAX_ROUTES_PER_PROJECT = 100


class NoUpstreamRoute(NotFound):
    code = "upstream_route_not_found"
    message = "No upstream route of this project matches this path."


class MethodNotAllowed(TollhouseError):
    status_code = 405
    code = "method_not_allowed"
    message = "This upstream route does not accept this method."


class UpstreamRouteExists(Conflict):
    code = "upstream_route_exists"
    message = "This project already has a route with this path prefix."


class UpstreamRouteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path_prefix: str = Field(max_length=200, pattern=r"^/?[A-Za-z0-9._~\-/]*$")
    upstream_url: str = Field(max_length=2000)
    methods: list[str] = Field(default_factory=lambda: ["GET"], min_length=1)
    units: int = Field(1, ge=1, le=1_000_000)
    # Upstream statuses that keep the units counted ("2xx", "2xx,304"); any other answer
    # gives them back.
    charge_on: str = Field("2xx", max_length=100)

    @field_validator("path_prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        try:
            return "/".join(proxy_paths.segments_of(value))
        except InvalidPath:
            raise ValueError("no dot segments or empty segments") from None

    @field_validator("charge_on")
    @classmethod
    def _charge_rule(cls, value: str) -> str:
        ChargeRule.parse(value)
        return value.replace(" ", "").lower()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        upper = sorted({method.upper() for method in methods})
        unknown = [method for method in upper if method not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods: {', '.join(unknown)}")
        return upper


class UpstreamRouteOut(BaseModel):
    id: str
    path_prefix: str
    upstream_url: str
    methods: list[str]
    units: int
    charge_on: str
    created_at: datetime

    @classmethod
    def of(cls, route: UpstreamRoute) -> UpstreamRouteOut:
        return cls(
            id=route.id,
            path_prefix=route.path_prefix,
            upstream_url=route.upstream_url,
            methods=route.methods.split(","),
            units=route.units,
            charge_on=route.charge_on,
            created_at=route.created_at,
        )


async def check_upstream_url(url: str, *, allow_private: bool) -> None:
    """SSRF: https to a public address; ALLOW_PRIVATE_UPSTREAMS also lets plain http through
    (a developer's API on their own machine)."""
    if allow_private and urlsplit(url).scheme == "http":
        url = "https" + url[len("http") :]
    await check_public_url(url, allow_private=allow_private)


async def list_routes(session: AsyncSession, project_id: str) -> list[UpstreamRoute]:
    rows = await session.scalars(
        select(UpstreamRoute)
        .where(UpstreamRoute.project_id == project_id)
        .order_by(UpstreamRoute.path_prefix)
    )
    return list(rows)


async def create_route(
    session: AsyncSession, project_id: str, body: UpstreamRouteCreate, *, allow_private: bool
) -> UpstreamRoute:
    await check_upstream_url(body.upstream_url, allow_private=allow_private)
    existing = await list_routes(session, project_id)
    if any(route.path_prefix == body.path_prefix for route in existing):
        raise UpstreamRouteExists()
    if len(existing) >= MAX_ROUTES_PER_PROJECT:
        raise Conflict(f"A project has at most {MAX_ROUTES_PER_PROJECT} upstream routes.")
    route = UpstreamRoute(
        project_id=project_id,
        path_prefix=body.path_prefix,
        upstream_url=body.upstream_url.rstrip("/"),
        methods=",".join(body.methods),
        units=body.units,
        charge_on=body.charge_on,
    )
    session.add(route)
    await session.flush()
    return route


async def delete_route(session: AsyncSession, project_id: str, route_id: str) -> UpstreamRoute:
    route = await session.scalar(
        select(UpstreamRoute).where(
            UpstreamRoute.id == route_id, UpstreamRoute.project_id == project_id
        )
    )
    if route is None:
        raise NotFound("No such upstream route in this project.", code="upstream_route_not_found")
    await session.delete(route)
    await session.flush()
    return route


@dataclass(frozen=True, slots=True)
class GatewayRoute:
    """What forwarding needs of a route: plain values, safe to keep between requests."""

    path_prefix: str
    upstream_url: str
    methods: str  # "GET,POST", as stored
    units: int
    base_path: str  # the upstream URL's path, without its trailing slash
    charge: ChargeRule

    @property
    def prefix_segments(self) -> tuple[str, ...]:
        return tuple(self.path_prefix.split("/")) if self.path_prefix else ()


_routes = cast(Table, UpstreamRoute.__table__)
_GATEWAY_ROUTES = select(
    _routes.c.path_prefix,
    _routes.c.upstream_url,
    _routes.c.methods,
    _routes.c.units,
    _routes.c.charge_on,
).where(_routes.c.project_id == bindparam("project"))
# project → its routes, for CALLER_CACHE_SECONDS; emptied when this process commits a change
# to any route (create/delete through the console), see metering/caches.py.
_gateway_routes: TTLCache[str, tuple[GatewayRoute, ...]] = TTLCache()
cleared_on_commit(_gateway_routes, "upstream_routes")


async def gateway_routes(
    session: AsyncSession, project_id: str, cache_seconds: float = 0
) -> tuple[GatewayRoute, ...]:
    """The project's routes, from this process's memory when read in the last
    `cache_seconds`."""
    if cache_seconds > 0:
        cached = _gateway_routes.get(project_id)
        if cached is not None:
            return cached
    rows = await session.execute(_GATEWAY_ROUTES, {"project": project_id})
    routes = tuple(
        GatewayRoute(
            prefix, url, methods, units, urlsplit(url).path.rstrip("/"), ChargeRule.parse(charge)
        )
        for prefix, url, methods, units, charge in rows
    )
    _gateway_routes.put(project_id, routes, cache_seconds)
    return routes


async def match_route(
    session: AsyncSession,
    project_id: str,
    path: ProxyPath,
    method: str,
    cache_seconds: float = 0,
) -> GatewayRoute:
    """The route with the longest prefix of `path` (404), if it takes `method` (405)."""
    routes = await gateway_routes(session, project_id, cache_seconds)
    candidates = [r for r in routes if path.starts_with(r.prefix_segments)]
    if not candidates:
        raise NoUpstreamRoute()
    route = max(candidates, key=lambda r: len(r.prefix_segments))
    if method.upper() not in route.methods.split(","):
        raise MethodNotAllowed(headers={"Allow": route.methods.replace(",", ", ")})
    return route


def refund_unless_kept(db: Database, meter: Meter, user: User, route: GatewayRoute) -> Settle:
    """Give the units back unless the upstream's answer is one the route charges for."""

    async def settle(status: int | None) -> None:
        if not route.charge.keeps(status):
            async with db.session() as session:
                await meter.refund(session, user, route.units)

    return settle


async def forward(
    request: Request, session: AsyncSession, caller: Caller, project_id: str
) -> Response:
    path = request_path(request)
    if not path.starts_with(("gw", project_id)):
        raise InvalidPath()
    # Another project's id is indistinguishable from one that does not exist.
    if caller.project_id != project_id:
        raise NoUpstreamRoute()
    assert caller.user is not None
    context = upstream_context(request)
    # Routes, plan and tier limit may come from this process's caches (CALLER_CACHE_SECONDS).
    cache_seconds = context.settings.caller_cache_seconds
    path = path.after(2)
    route = await match_route(session, project_id, path, request.method, cache_seconds)
    rest = path.after(len(route.prefix_segments))
    # Headers are checked before the unit is counted: a bad one costs nothing.
    outgoing = prepare(request, route.base_path + rest.encoded, identity=identity_of(caller))
    plan = await effective_plan(session, caller, cache_seconds)
    # The same meter as POST /api/data: one count per user, exact across replicas with Redis.
    meter = meter_of(request)
    await meter.track(session, caller.user, plan, route.units, cache_seconds)
    # Counted and committed before the upstream is called (no transaction held open on I/O);
    # a count served from memory wrote nothing, so there is nothing to commit.
    if session.in_transaction():
        await session.commit()
    ours = "/".join(("/gw", project_id, *route.prefix_segments))

    def location(value: str, sent_to: str) -> str | None:
        return proxy_paths.rewrite_location(value, sent_to, route.upstream_url, ours)

    return await context.platform.for_origin(route.upstream_url).forward(
        request,
        outgoing,
        settle=refund_unless_kept(database(request), meter, caller.user, route),
        location=location,
    )
