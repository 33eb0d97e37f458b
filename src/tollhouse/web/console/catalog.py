"""Tiers and products: create and edit them (price, limit, period, features, inventory),
type-locked by the catalog service as the API is, with what Stripe sync did."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tollhouse.billing.stripe.client import StripeDep
from tollhouse.catalog import service as catalog
from tollhouse.catalog.errors import allowed_billing_mode
from tollhouse.catalog.models import PERIODS
from tollhouse.catalog.schemas import TierCreate, TierUpdate
from tollhouse.console import catalog as api
from tollhouse.kit.errors import NotFound, TollhouseError
from tollhouse.tenancy.models import Project
from tollhouse.web.console.common import (
    ConsolePage,
    ConsolePageDep,
    project_of,
    redirect,
    refusal,
    show_project,
)
from tollhouse.web.forms import parse_body
from tollhouse.web.hosted.common import PageRefused

router = APIRouter(include_in_schema=False)
LISTS = ("features",)


async def _tiers_page(
    page: ConsolePage, project: Project, *, status: int = 200, **context: Any
) -> HTMLResponse:
    tiers = await catalog.tiers_of_project(page.console.session, project.id)
    return await show_project(
        page,
        project,
        "tiers",
        status=status,
        tiers=tiers,
        periods=PERIODS,
        billing_mode=allowed_billing_mode(project.type),
        **context,
    )


@router.get("/console/projects/{project_id}/tiers")
async def tiers_page(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    return await _tiers_page(page, await project_of(page, project_id))


@router.post("/console/projects/{project_id}/tiers", response_model=None)
async def create_tier(project_id: str, page: ConsolePageDep, stripe: StripeDep) -> Any:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, TierCreate, LISTS)
        await api.create_tier(body, project, page.console, stripe)
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        values = dict(await page.request.form())
        return await _tiers_page(page, await project_of(page, project_id), **failed, values=values)
    return redirect(f"/console/projects/{project_id}/tiers")


async def _tier_page(
    page: ConsolePage, project: Project, slug: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    try:
        tier = await catalog.get_tier(page.console.session, project, slug[:64])
    except NotFound as exc:
        raise PageRefused(404, "Not found", "No such tier in this project.") from exc
    return await show_project(
        page, project, "tier", status=status, tier=tier, periods=PERIODS, **context
    )


@router.get("/console/projects/{project_id}/tiers/{slug}")
async def tier_page(project_id: str, slug: str, page: ConsolePageDep) -> HTMLResponse:
    return await _tier_page(page, await project_of(page, project_id), slug)


@router.post("/console/projects/{project_id}/tiers/{slug}", response_model=None)
async def update_tier(project_id: str, slug: str, page: ConsolePageDep, stripe: StripeDep) -> Any:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, TierUpdate, LISTS)
        await api.update_tier(slug[:64], body, project, page.console, stripe)
    except NotFound as exc:
        raise PageRefused(404, "Not found", "No such tier in this project.") from exc
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        return await _tier_page(page, await project_of(page, project_id), slug, **failed)
    return await _tier_page(page, project, slug, notice="Saved.")
