"""`/gw/{project}/…` on the lean path (kit/hot_routes.py), under its `/gw/` prefix.

The handler is the route's own (`routes.developer_upstream`); what FastAPI would inject is
resolved by direct calls to the same functions its dependencies call: the caller through
`metering.guards.rate_limited_end_user` (identity's one resolver, then the project's rate
limit), the session as a unit of work (`db.session.unit_of_work`; the forward commits the
count before calling the upstream).
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tollhouse.db.session import database, unit_of_work
from tollhouse.kit.hot_routes import Endpoint
from tollhouse.metering.guards import rate_limited_end_user
from tollhouse.upstreams import routes

PREFIX = "/gw/"


async def developer_upstream(request: Request) -> Response:
    caller = await rate_limited_end_user(request)
    async with unit_of_work(database(request)) as session:
        project_id: str = request.path_params["project_id"]
        return await routes.developer_upstream(request, project_id, caller, session)


def _route() -> APIRoute:
    return next(
        route
        for route in routes.gateway.routes
        if isinstance(route, APIRoute) and route.path.startswith(PREFIX)
    )


PREFIXES: dict[str, tuple[APIRoute, Endpoint]] = {PREFIX: (_route(), developer_upstream)}
