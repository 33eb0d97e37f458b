"""A project's upstream routes: developers' APIs served at /gw/{project}/* (upstreams/)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tollhouse.console.deps import ConsoleDep, ProjectDep
from tollhouse.upstreams import platform
from tollhouse.upstreams.platform import UpstreamRouteCreate, UpstreamRouteOut

router = APIRouter(tags=["console"])


@router.get("/projects/{project_id}/upstreams")
async def list_upstreams(project: ProjectDep, console: ConsoleDep) -> list[UpstreamRouteOut]:
    routes = await platform.list_routes(console.session, project.id)
    return [UpstreamRouteOut.of(route) for route in routes]


@router.post("/projects/{project_id}/upstreams", status_code=201)
async def create_upstream(
    body: UpstreamRouteCreate, project: ProjectDep, console: ConsoleDep
) -> UpstreamRouteOut:
    route = await platform.create_route(
        console.session,
        project.id,
        body,
        allow_private=console.settings.private_urls_allowed,
    )
    await console.audit("upstream.create", route.id, path_prefix=route.path_prefix)
    return UpstreamRouteOut.of(route)


@router.delete("/projects/{project_id}/upstreams/{route_id}", status_code=204)
async def delete_upstream(route_id: str, project: ProjectDep, console: ConsoleDep) -> Response:
    route = await platform.delete_route(console.session, project.id, route_id)
    await console.audit("upstream.delete", route.id, path_prefix=route.path_prefix)
    return Response(status_code=204)
