"""Projects: the list (and the first-run guide when there is none), create, the test/live
switch, and promote test → live after a preview of what will be copied."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tollhouse.billing.stripe.client import StripeDep
from tollhouse.catalog import service as catalog
from tollhouse.console import projects as api
from tollhouse.console.schemas import ProjectCreate, ProjectCreated
from tollhouse.kit.errors import TollhouseError
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project
from tollhouse.tenancy.promote import CARRIED_SETTINGS
from tollhouse.web.console.common import (
    ConsolePage,
    ConsolePageDep,
    paged,
    project_of,
    refusal,
    show,
    show_project,
)
from tollhouse.web.console.keys import project_page
from tollhouse.web.forms import parse_body, parse_form
from tollhouse.web.hosted.forms import EmptyForm

router = APIRouter(include_in_schema=False)


async def _home(page: ConsolePage, *, status: int = 200, **context: object) -> HTMLResponse:
    projects = await tenancy.projects_of_platform(page.console.session, page.console.platform_id)
    rows, paging = paged(page.request, projects)
    return show(
        page.request, "home", status=status, me=page, projects=rows, paging=paging, **context
    )


@router.get("/console")
async def home(page: ConsolePageDep) -> HTMLResponse:
    return await _home(page)


@router.post("/console/projects")
async def create_project(page: ConsolePageDep) -> HTMLResponse:
    try:
        body = await parse_body(page.request, ProjectCreate)
        created: ProjectCreated = await api.create_project(body, page.console)
    except TollhouseError as exc:
        return await _home(page, **await refusal(page, exc), values=dict(await page.request.form()))
    project = await project_of(page, created.project.id)
    return await project_page(
        page,
        project,
        status=201,
        issued={"publishable": created.publishable_key, "secret": created.secret_key},
    )


# --- promote -------------------------------------------------------------------------------


async def _promote_page(
    page: ConsolePage, project: Project, *, status: int = 200, **context: object
) -> HTMLResponse:
    tiers = await catalog.tiers_of_project(page.console.session, project.id)
    carried = {name: getattr(project, name) for name in CARRIED_SETTINGS}
    return await show_project(
        page, project, "promote", status=status, tiers=tiers, carried=carried, **context
    )


@router.get("/console/projects/{project_id}/promote")
async def promote_preview(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    return await _promote_page(page, await project_of(page, project_id))


@router.post("/console/projects/{project_id}/promote")
async def promote(project_id: str, page: ConsolePageDep, stripe: StripeDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        await parse_form(page.request, EmptyForm)
        promoted = await api.promote(project, page.console, stripe)
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        return await _promote_page(page, await project_of(page, project_id), **failed)
    live = await project_of(page, promoted.project.id)
    return await project_page(
        page,
        live,
        status=201,
        issued={"publishable": promoted.publishable_key, "secret": promoted.secret_key},
        notice=f"Promoted to live: {promoted.tiers_copied} tier(s) copied.",
    )


@router.get("/console/projects/{project_id}")
async def project_view(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    return await project_page(page, project)
