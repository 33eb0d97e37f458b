"""Tiers → Stripe products and prices on the platform's connected account.

Stripe prices are immutable: a price change creates a new price and deactivates the old one
(subscribers keep the price they bought until they change plan). Two ways in:

- `tier_saved`, called by the console after a tier is created or updated: syncs when the
  project's platform has a connection for the project's mode (else nothing — the tier is
  synced on its first checkout);
- `price_unpriced`, called when Connect completes: every tier of that mode still without a
  price gets one;
- `ensure_price`, called by checkout: creates the product and price when the tier has none
  yet (tiers made before Stripe was connected, tiers copied by promote).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.stripe import connect
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.catalog import service as catalog
from tollhouse.catalog.models import Tier
from tollhouse.kit.clock import utcnow
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project

PRODUCT_FIELDS = ("display_name", "description", "image_url")


def _product_params(project: Project, tier: Tier) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": tier.display_name,
        "metadata": {"projectId": project.id, "platformId": project.platform_id, "tier": tier.slug},
    }
    if tier.description:
        params["description"] = tier.description
    if tier.image_url:
        params["images"] = [tier.image_url]
    return params


async def _new_price(gateway: StripeGateway, project: Project, tier: Tier, account: str) -> str:
    assert tier.stripe_product_id is not None
    return await gateway.create_price(
        mode=project.mode,
        account_id=account,
        product_id=tier.stripe_product_id,
        unit_amount=tier.price_cents,
        currency=tier.currency,
        recurring_interval="month" if tier.billing_mode == "subscription" else None,
    )


async def _sync(
    session: AsyncSession,
    gateway: StripeGateway,
    project: Project,
    tier: Tier,
    account: str,
    *,
    price_changed: bool,
    product_changed: bool,
) -> None:
    mode = project.mode
    if tier.stripe_product_id is None:
        tier.stripe_product_id = await gateway.create_product(
            mode=mode, account_id=account, params=_product_params(project, tier)
        )
    elif product_changed:
        await gateway.update_product(
            mode=mode,
            account_id=account,
            product_id=tier.stripe_product_id,
            params=_product_params(project, tier),
        )
    old = tier.stripe_price_id
    if old is not None and not price_changed:
        pass
    elif tier.price_cents > 0:
        tier.stripe_price_id = await _new_price(gateway, project, tier, account)
    else:
        tier.stripe_price_id = None
    if old is not None and old != tier.stripe_price_id:
        await gateway.deactivate_price(mode=mode, account_id=account, price_id=old)
    tier.updated_at = utcnow()
    await session.flush()


async def tier_saved(
    session: AsyncSession,
    gateway: StripeGateway,
    project: Project,
    tier: Tier,
    changed: set[str] | None = None,
) -> None:
    """After a console create (`changed` None) or update (`changed` = the fields sent)."""
    if not gateway.configured(project.mode):
        return
    found = await connect.connection(session, project.platform_id, project.mode)
    if found is None:
        return
    price_changed = changed is None or bool({"price_cents", "currency", "billing_mode"} & changed)
    product_changed = changed is None or bool(set(PRODUCT_FIELDS) & changed)
    await _sync(
        session,
        gateway,
        project,
        tier,
        found.account_id,
        price_changed=price_changed,
        product_changed=product_changed,
    )


async def ensure_price(
    session: AsyncSession, gateway: StripeGateway, project: Project, tier: Tier, account: str
) -> str:
    """The tier's current Stripe price on `account`, created now if it has none yet."""
    if tier.stripe_price_id is None:
        await _sync(
            session, gateway, project, tier, account, price_changed=True, product_changed=False
        )
    assert tier.stripe_price_id is not None
    return tier.stripe_price_id


async def price_unpriced(
    session: AsyncSession, gateway: StripeGateway, platform_id: str, mode: str, account: str
) -> int:
    """Right after Connect: products and prices for the mode's tiers made before Stripe was
    connected, so `GET /api/products` shows a `priceId` the SDK's cart can send. Returns how
    many tiers got a price."""
    priced = 0
    for project in await tenancy.projects_of_platform(session, platform_id):
        if project.mode != mode:
            continue
        for tier in await catalog.tiers_of_project(session, project.id):
            if tier.stripe_price_id is None and tier.price_cents > 0:
                await _sync(
                    session,
                    gateway,
                    project,
                    tier,
                    account,
                    price_changed=True,
                    product_changed=False,
                )
                priced += 1
    return priced
