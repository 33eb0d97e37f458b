"""A project's tiers (subscriptions) and products (one-off); the catalog service type-locks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tollhouse.assets import service as assets
from tollhouse.billing.stripe import catalog_sync
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.catalog import service as catalog
from tollhouse.catalog.schemas import TierCreate, TierOut, TierUpdate
from tollhouse.console.deps import ConsoleDep, ProjectDep
from tollhouse.console.schemas import TierList

router = APIRouter(tags=["console"])


@router.get("/projects/{project_id}/tiers")
async def list_tiers(project: ProjectDep, console: ConsoleDep) -> TierList:
    tiers = await catalog.tiers_of_project(console.session, project.id)
    return TierList(tiers=[TierOut.of(tier) for tier in tiers])


@router.post("/projects/{project_id}/tiers", status_code=201)
async def create_tier(
    body: TierCreate, project: ProjectDep, console: ConsoleDep, stripe: StripeDep
) -> TierOut:
    tier = await catalog.create_tier(console.session, project, body)
    await catalog_sync.tier_saved(console.session, stripe, project, tier)
    await console.audit("tier.create", tier.slug, project_id=project.id)
    return TierOut.of(tier)


@router.get("/projects/{project_id}/tiers/{slug}")
async def get_tier(slug: str, project: ProjectDep, console: ConsoleDep) -> TierOut:
    return TierOut.of(await catalog.get_tier(console.session, project, slug))


@router.patch("/projects/{project_id}/tiers/{slug}")
async def update_tier(
    slug: str, body: TierUpdate, project: ProjectDep, console: ConsoleDep, stripe: StripeDep
) -> TierOut:
    tier, changes = await catalog.update_tier(console.session, project, slug, body)
    await catalog_sync.tier_saved(console.session, stripe, project, tier, set(changes))
    await console.audit("tier.update", tier.slug, project_id=project.id, fields=sorted(changes))
    return TierOut.of(tier)


@router.delete("/projects/{project_id}/tiers/{slug}", status_code=204)
async def delete_tier(slug: str, project: ProjectDep, console: ConsoleDep) -> None:
    await catalog.delete_tier(console.session, project, slug)
    await console.audit("tier.delete", slug, project_id=project.id)


class TierImage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    asset_key: str = Field(alias="assetKey", min_length=1, max_length=400)


@router.put("/projects/{project_id}/tiers/{slug}/image")
async def set_tier_image(
    slug: str,
    body: TierImage,
    project: ProjectDep,
    console: ConsoleDep,
    stripe: StripeDep,
    request: Request,
) -> TierOut:
    """The tier's `imageUrl` from one of the project's assets (an absolute URL, so Stripe can
    show it as the product image)."""
    asset = await assets.find(console.session, body.asset_key, project.id)
    url = str(request.base_url).rstrip("/") + assets.url_of(asset)
    update = TierUpdate(image_url=url)
    tier, changes = await catalog.update_tier(console.session, project, slug, update)
    await catalog_sync.tier_saved(console.session, stripe, project, tier, set(changes))
    await console.audit("tier.image", tier.slug, project_id=project.id, asset=asset.key)
    return TierOut.of(tier)
