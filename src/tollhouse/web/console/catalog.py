"""Tiers and products: create and edit them (price, limit, period, features, inventory, an
image picked from the project's assets), type-locked by the catalog service as the API is,
with what Stripe sync did. Images are uploaded here through the assets service, with its
sniffing, size limit and quota."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from tollhouse.assets import service as assets
from tollhouse.assets.routes import asset_context
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
    paged,
    project_of,
    redirect,
    refusal,
    show_project,
)
from tollhouse.web.forms import parse_body, parse_form, parse_upload
from tollhouse.web.hosted.common import PageRefused

router = APIRouter(include_in_schema=False)
LISTS = ("features",)


class ImageChoice(BaseModel):
    """The picker's choice: an asset's key, or empty for no image."""

    model_config = ConfigDict(extra="ignore")

    asset_key: str = Field("", max_length=400)


async def _tiers_page(
    page: ConsolePage, project: Project, *, status: int = 200, **context: Any
) -> HTMLResponse:
    tiers, tiers_page = paged(
        page.request, await catalog.tiers_of_project(page.console.session, project.id)
    )
    return await show_project(
        page,
        project,
        "tiers",
        status=status,
        tiers=tiers,
        tiers_page=tiers_page,
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
    images, images_page = paged(
        page.request, await assets.of_project(page.console.session, project.id), "images"
    )
    return await show_project(
        page,
        project,
        "tier",
        status=status,
        tier=tier,
        periods=PERIODS,
        images=[(image, assets.url_of(image)) for image in images],
        images_page=images_page,
        **context,
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


@router.post("/console/projects/{project_id}/tiers/{slug}/image")
async def choose_image(
    project_id: str, slug: str, page: ConsolePageDep, stripe: StripeDep
) -> HTMLResponse:
    """The tier's image from one of this project's assets (another project's key is not
    found), through the Developer API's handler; an empty choice clears it."""
    project = await project_of(page, project_id)
    try:
        choice = await parse_form(page.request, ImageChoice)
        if choice.asset_key:
            image = api.TierImage(asset_key=choice.asset_key)
            await api.set_tier_image(slug[:64], image, project, page.console, stripe, page.request)
        else:
            cleared = TierUpdate(image_url=None)
            await api.update_tier(slug[:64], cleared, project, page.console, stripe)
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        return await _tier_page(page, await project_of(page, project_id), slug, **failed)
    notice = "Image chosen." if choice.asset_key else "Image removed."
    return await _tier_page(page, project, slug, notice=notice)


@router.post("/console/projects/{project_id}/tiers/{slug}/images")
async def upload_image(project_id: str, slug: str, page: ConsolePageDep) -> HTMLResponse:
    """Upload an image to the project's assets (the assets service's rules: sniffed type,
    size limit, quota), to pick for this tier or any other."""
    project = await project_of(page, project_id)
    try:
        file = await parse_upload(page.request)
        context = asset_context(page.request)
        await assets.upload(
            page.console.session,
            context.storage,
            context.limits,
            project.id,
            file.filename or "",
            await file.read(context.limits.max_bytes + 1),
            file.content_type,
        )
        await page.console.audit("asset.upload", file.filename, project_id=project.id)
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        return await _tier_page(page, await project_of(page, project_id), slug, **failed)
    return await _tier_page(page, project, slug, notice=f"Uploaded {file.filename}.")
