"""Developers' APIs behind /gw/{project}/*: metering without an SDK call.

A developer registers `{path_prefix, upstream_url, methods, units}` for a project (Developer
API). An end user calls `/gw/{project}/{path}` with the project's key and an end-user token:
Tollhouse authenticates, applies the rate limit and counts `units` against the user's tier
quota (the same atomic `track` as `POST /api/data`), forwards to
`{upstream_url}/{the path after the prefix}`, and refunds the units when the upstream fails.
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
from tollhouse.kit.errors import Conflict, NotFound, TollhouseError
from tollhouse.kit.forwarding import Settle
from tollhouse.kit.ssrf import check_public_url
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.metering import quota
from tollhouse.metering.caches import cleared_on_commit
from tollhouse.metering.plans import effective_plan
from tollhouse.upstreams.context import identity_of, upstream_context
from tollhouse.upstreams.models import UpstreamRoute

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

    @field_validator("path_prefix")
    @classmethod
    def _strip_slashes(cls, value: str) -> str:
        return value.strip("/")

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
    created_at: datetime

    @classmethod
    def of(cls, route: UpstreamRoute) -> UpstreamRouteOut:
        return cls(
            id=route.id,
            path_prefix=route.path_prefix,
            upstream_url=route.upstream_url,
            methods=route.methods.split(","),
            units=route.units,
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


_routes = cast(Table, UpstreamRoute.__table__)
_GATEWAY_ROUTES = select(
    _routes.c.path_prefix, _routes.c.upstream_url, _routes.c.methods, _routes.c.units
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
        GatewayRoute(prefix, url, methods, units, urlsplit(url).path.rstrip("/"))
        for prefix, url, methods, units in rows
    )
    _gateway_routes.put(project_id, routes, cache_seconds)
    return routes


def _matches(prefix: str, path: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


async def match_route(
    session: AsyncSession, project_id: str, path: str, method: str, cache_seconds: float = 0
) -> GatewayRoute:
    """The route with the longest prefix of `path` (404), if it takes `method` (405)."""
    path = path.strip("/")
    routes = await gateway_routes(session, project_id, cache_seconds)
    candidates = [r for r in routes if _matches(r.path_prefix, path)]
    if not candidates:
        raise NoUpstreamRoute()
    route = max(candidates, key=lambda r: len(r.path_prefix))
    if method.upper() not in route.methods.split(","):
        raise MethodNotAllowed(headers={"Allow": route.methods.replace(",", ", ")})
    return route


def refund_on_failure(db: Database, user: User, units: int) -> Settle:
    async def settle(ok: bool) -> None:
        if not ok:
            async with db.session() as session:
                await quota.refund(session, user, units)

    return settle


async def forward(
    request: Request, session: AsyncSession, caller: Caller, project_id: str, path: str
) -> Response:
    # Another project's id is indistinguishable from one that does not exist.
    if caller.project_id != project_id:
        raise NoUpstreamRoute()
    assert caller.user is not None
    context = upstream_context(request)
    # Routes, plan and tier limit may come from this process's caches (CALLER_CACHE_SECONDS).
    cache_seconds = context.settings.caller_cache_seconds
    route = await match_route(session, project_id, path, request.method, cache_seconds)
    plan = await effective_plan(session, caller, cache_seconds)
    await quota.track(session, caller.user, plan, route.units, cache_seconds=cache_seconds)
    # Counted and committed before the upstream is called (no transaction held open on I/O).
    await session.commit()
    rest = path.strip("/").removeprefix(route.path_prefix).lstrip("/")
    upstream = context.platform.for_origin(route.upstream_url)
    return await upstream.forward(
        request,
        f"{route.base_path}/{rest}",
        identity=identity_of(caller),
        settle=refund_on_failure(database(request), caller.user, route.units),
    )
