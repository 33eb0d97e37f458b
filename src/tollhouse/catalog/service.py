"""Catalog rules: a project's tiers (subscriptions) and products (one-off), type-locked.

Read functions (`tiers_of_project`, `tier_by_slug`) serve the Platform API; the writers serve
the Developer API and the CLI. Callers pass a project they have already scoped to a platform.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.catalog.errors import (
    InvalidTierName,
    TierExists,
    TierNotFound,
    TypeLocked,
    allowed_billing_mode,
)
from tollhouse.catalog.models import Tier
from tollhouse.catalog.schemas import TierCreate, TierUpdate
from tollhouse.kit.clock import utcnow
from tollhouse.tenancy.models import Project

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# Copied on promote: everything a developer configured, nothing Stripe made for the old mode.
_COPIED_FIELDS = [
    "slug",
    "display_name",
    "description",
    "price_cents",
    "currency",
    "limit",
    "period",
    "billing_mode",
    "features",
    "image_url",
    "inventory",
    "popular",
    "trial_days",
    "metadata_",
]


def slugify(name: str) -> str:
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")
    if not slug:
        raise InvalidTierName()
    return slug


async def tiers_of_project(session: AsyncSession, project_id: str) -> list[Tier]:
    rows = await session.scalars(
        select(Tier).where(Tier.project_id == project_id).order_by(Tier.price_cents, Tier.slug)
    )
    return list(rows)


async def tier_by_slug(session: AsyncSession, project_id: str, slug: str) -> Tier | None:
    return await session.scalar(
        select(Tier).where(Tier.project_id == project_id, Tier.slug == slug)
    )


async def subscription_tier_slugs(session: AsyncSession, project_id: str) -> set[str]:
    """The plans an end user of the project may be on."""
    rows = await session.scalars(
        select(Tier.slug).where(Tier.project_id == project_id, Tier.billing_mode == "subscription")
    )
    return set(rows)


def _check_type_lock(project: Project, billing_mode: str) -> None:
    if billing_mode != allowed_billing_mode(project.type):
        raise TypeLocked(project.type, billing_mode)


async def _insert(session: AsyncSession, tier: Tier) -> Tier:
    # The unique (project_id, slug) index decides races; a savepoint keeps the request usable.
    try:
        async with session.begin_nested():
            session.add(tier)
            await session.flush()
    except IntegrityError as exc:
        raise TierExists() from exc
    return tier


async def create_tier(session: AsyncSession, project: Project, spec: TierCreate) -> Tier:
    billing_mode = spec.billing_mode or allowed_billing_mode(project.type)
    _check_type_lock(project, billing_mode)
    fields = spec.model_dump(exclude={"name", "billing_mode"})
    fields["display_name"] = spec.display_name or spec.name
    tier = Tier(project_id=project.id, slug=slugify(spec.name), billing_mode=billing_mode, **fields)
    return await _insert(session, tier)


async def get_tier(session: AsyncSession, project: Project, slug: str) -> Tier:
    tier = await tier_by_slug(session, project.id, slug)
    if tier is None:
        raise TierNotFound()
    return tier


async def update_tier(
    session: AsyncSession, project: Project, slug: str, update: TierUpdate
) -> tuple[Tier, dict[str, Any]]:
    """Apply a partial update; returns the tier and the fields that were sent."""
    tier = await get_tier(session, project, slug)
    changes = update.changes()
    if "billing_mode" in changes:
        _check_type_lock(project, changes["billing_mode"])
    for field, value in changes.items():
        setattr(tier, field, value)
    tier.updated_at = utcnow()
    await session.flush()
    return tier, changes


async def delete_tier(session: AsyncSession, project: Project, slug: str) -> None:
    result = await session.execute(
        delete(Tier).where(Tier.project_id == project.id, Tier.slug == slug).returning(Tier.id)
    )
    if result.first() is None:
        raise TierNotFound()


async def copy_tiers(session: AsyncSession, source_project_id: str, target: Project) -> int:
    """Copy every tier of one project into another (promote test → live); returns the count."""
    tiers = await tiers_of_project(session, source_project_id)
    for tier in tiers:
        session.add(
            Tier(project_id=target.id, **{name: getattr(tier, name) for name in _COPIED_FIELDS})
        )
    await session.flush()
    return len(tiers)
