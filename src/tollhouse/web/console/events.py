"""Events of a project: the Stripe webhook deliveries it received (each recorded once, when
handled; a delivery that failed is rolled back and retried by Stripe), newest first. The
developer actions are the audit log (`/console/audit`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tollhouse.billing import inbox
from tollhouse.web.console.common import (
    PAGE_SIZE,
    ConsolePageDep,
    Paging,
    offset_of,
    project_of,
    show_project,
)

router = APIRouter(include_in_schema=False)


@router.get("/console/projects/{project_id}/events")
async def events_page(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    session = page.console.session
    offset = offset_of(page.request)
    events = await inbox.recent(session, project.id, limit=PAGE_SIZE, offset=offset)
    total = await inbox.count(session, project.id)
    return await show_project(
        page,
        project,
        "events",
        events=events,
        paging=Paging(page.request, offset, PAGE_SIZE, total),
    )
