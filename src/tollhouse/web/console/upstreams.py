"""Upstreams: a developer's own API registered behind `/gw/{project}/…`, its price in units
per call and the methods it answers; the Developer API's handlers do the work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tollhouse.console import upstreams as api
from tollhouse.kit.errors import TollhouseError
from tollhouse.tenancy.models import Project
from tollhouse.upstreams.platform import METHODS, UpstreamRouteCreate
from tollhouse.web.console.common import (
    ConsolePage,
    ConsolePageDep,
    paged,
    project_of,
    refusal,
    show_project,
)
from tollhouse.web.forms import parse_body, parse_form
from tollhouse.web.hosted.forms import EmptyForm

router = APIRouter(include_in_schema=False)


async def _upstreams_page(
    page: ConsolePage, project: Project, *, status: int = 200, **context: Any
) -> HTMLResponse:
    routes, routes_page = paged(page.request, await api.list_upstreams(project, page.console))
    return await show_project(
        page,
        project,
        "upstreams",
        status=status,
        routes=routes,
        routes_page=routes_page,
        methods=sorted(METHODS),
        gateway=f"{str(page.request.base_url).rstrip('/')}/gw/{project.id}",
        **context,
    )


@router.get("/console/projects/{project_id}/upstreams")
async def upstreams_page(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    return await _upstreams_page(page, await project_of(page, project_id))


@router.post("/console/projects/{project_id}/upstreams")
async def create_upstream(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, UpstreamRouteCreate, ("methods",))
        route = await api.create_upstream(body, project, page.console)
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        values = dict(await page.request.form())
        return await _upstreams_page(
            page, await project_of(page, project_id), **failed, values=values
        )
    return await _upstreams_page(
        page, project, status=201, notice=f"/{route.path_prefix} now reaches {route.upstream_url}."
    )


@router.post("/console/projects/{project_id}/upstreams/{route_id}/delete")
async def delete_upstream(project_id: str, route_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        await parse_form(page.request, EmptyForm)
        await api.delete_upstream(route_id[:40], project, page.console)
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        return await _upstreams_page(page, await project_of(page, project_id), **failed)
    return await _upstreams_page(page, project, notice="Upstream removed.")
