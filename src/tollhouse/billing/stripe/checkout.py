"""Subscription checkout and the customer portal for a project's end users (§3.6, §3.9).

The price is always the tier's own: a `priceId` from the client is only a cross-check (400
`price_mismatch` unless it is the tier's current price), never what is charged — the
original let a user pay the cheap price and claim the expensive tier. Redirect URLs must be
https, or http on localhost (400 `url_not_allowed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.stripe import catalog_sync, connect
from tollhouse.billing.stripe import subscriptions as subs
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.billing.stripe.errors import (
    NoBillingAccount,
    PriceMismatch,
    TierNotPurchasable,
    UnknownTier,
    UrlNotAllowed,
)
from tollhouse.catalog.models import Tier
from tollhouse.identity.models import User
from tollhouse.tenancy import origins
from tollhouse.tenancy.models import Project

DEFAULT_TIER = "pro"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
URL_MAX = 2000


class CheckoutRequest(BaseModel):
    """`POST /api/create-checkout` (the SDK's field names)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    tier: str | None = Field(None, min_length=1, max_length=200)
    price_id: str | None = Field(None, alias="priceId", min_length=1, max_length=255)
    success_url: str | None = Field(None, alias="successUrl", max_length=URL_MAX)
    cancel_url: str | None = Field(None, alias="cancelUrl", max_length=URL_MAX)


class PortalRequest(BaseModel):
    """`POST /api/customer-portal`."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    return_url: str | None = Field(None, alias="returnUrl", max_length=URL_MAX)


@dataclass(frozen=True, slots=True)
class Buyer:
    """Who is buying, where: the end user, their project, and the key's mode."""

    project: Project
    user: User
    publishable_key: str | None


def allowed_url(url: str, field: str) -> str:
    """https anywhere, http only on localhost; nothing else (no javascript:, no data:)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" and bool(host)
    local = parts.scheme == "http" and host in LOCAL_HOSTS
    if not (secure or local) or parts.username or parts.password:
        raise UrlNotAllowed(f"{field} must be an https URL (or http://localhost).")
    return url


def redirect_url(given: str | None, origin: str | None, path: str, field: str) -> str:
    if given:
        return allowed_url(given, field)
    if origin:
        return allowed_url(origin.rstrip("/") + path, "Origin")
    raise UrlNotAllowed(f"Send {field} (or call from a browser page with an Origin).")


async def project_redirect_url(
    session: AsyncSession,
    project_id: str,
    given: str | None,
    origin: str | None,
    path: str,
    field: str,
) -> str:
    """As `redirect_url`, and a relative `given` (the SDK's `/dashboard`) is resolved against
    the request's `Origin` when the project allows that origin."""
    if given:
        given = await origins.absolute(session, project_id, given, origin, field)
    return redirect_url(given, origin, path, field)


async def _tier(session: AsyncSession, project_id: str, name: str) -> Tier:
    """A subscription tier by slug or display name, case-insensitive."""
    wanted = name.strip().lower()
    tier = await session.scalar(
        select(Tier)
        .where(
            Tier.project_id == project_id,
            Tier.billing_mode == "subscription",
            (Tier.slug == wanted) | (func.lower(Tier.display_name) == wanted),
        )
        .order_by(Tier.slug != wanted)
        .limit(1)
    )
    if tier is None:
        raise UnknownTier(f"The project has no subscription tier named {name!r}.")
    return tier


async def create_checkout(
    session: AsyncSession,
    gateway: StripeGateway,
    buyer: Buyer,
    body: CheckoutRequest,
    origin: str | None,
) -> str:
    """A Checkout Session for the tier's own price on the platform's account; its URL."""
    project, user = buyer.project, buyer.user
    tier = await _tier(session, project.id, body.tier or DEFAULT_TIER)
    if tier.price_cents <= 0:
        raise TierNotPurchasable(f"The tier {tier.slug!r} is free: there is nothing to buy.")
    success = await project_redirect_url(
        session, project.id, body.success_url, origin, "/dashboard?success=true", "successUrl"
    )
    cancel = await project_redirect_url(
        session, project.id, body.cancel_url, origin, "/dashboard?canceled=true", "cancelUrl"
    )
    if body.price_id is not None and body.price_id != tier.stripe_price_id:
        raise PriceMismatch(f"priceId is not the current price of the tier {tier.slug!r}.")
    account = await connect.account_of(session, project.platform_id, project.mode)
    price = await catalog_sync.ensure_price(session, gateway, project, tier, account)
    metadata = {"userId": user.external_id or str(user.id), "tier": tier.slug}
    metadata["projectId"] = project.id
    if buyer.publishable_key:
        metadata["publishableKey"] = buyer.publishable_key
    created = await gateway.create_checkout_session(
        mode="live" if project.mode == "live" else "test",
        account_id=account,
        checkout_mode="subscription",
        line_items=[{"price": price, "quantity": 1}],
        success_url=success,
        cancel_url=cancel,
        metadata=metadata,
        client_reference_id=str(user.id),
        customer_email=user.email,
        customer_id=await subs.latest_customer_id(session, project.id, user.id),
        trial_days=tier.trial_days or None,
        automatic_tax=project.enable_tax,
    )
    return created.url


async def portal(
    session: AsyncSession,
    gateway: StripeGateway,
    buyer: Buyer,
    body: PortalRequest,
    origin: str | None,
) -> str:
    """A billing-portal session for the user's Stripe customer; its URL."""
    project, user = buyer.project, buyer.user
    customer = await subs.latest_customer_id(session, project.id, user.id)
    if customer is None:
        raise NoBillingAccount()
    return_url = await project_redirect_url(
        session, project.id, body.return_url, origin, "/dashboard", "returnUrl"
    )
    account = await connect.account_of(session, project.platform_id, project.mode)
    return await gateway.create_portal_session(
        mode=project.mode, account_id=account, customer_id=customer, return_url=return_url
    )
