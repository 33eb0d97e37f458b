"""The platform subscription: developers pay the operator (off while PLATFORM_PRICE_ID is unset).

- Checkout runs on the operator's own Stripe account (no `Stripe-Account`), subscription mode,
  PLATFORM_PRICE_ID (+ the metered overage price), a trial on a first subscription only, and
  metadata `{kind: "platform", platformId}` on the session and the subscription.
- Webhook events of that kind only say which subscription changed: it is re-read from Stripe
  and its state written to the platform (out-of-order safe). A deleted subscription keeps its
  `current_period_end`, which starts the grace period.
- The gate itself is `tenancy.PlanGate` (evaluated on each key lookup, cached with the key).
- Daily, trialing/active platforms report their live end-user count to Stripe's meter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.stripe import subscriptions as subs
from tollhouse.billing.stripe.checkout import allowed_url
from tollhouse.billing.stripe.client import StripeGateway
from tollhouse.billing.stripe.errors import StripeFailure
from tollhouse.config import Settings
from tollhouse.identity.models import User
from tollhouse.kit.errors import BadRequest, Conflict, NotFound
from tollhouse.tenancy.models import Developer, Platform, Project
from tollhouse.tenancy.service import PLAN_ALLOWED_STATUSES

log = structlog.get_logger("tollhouse.platform_plan")

KIND = "platform"
# Stripe's statuses in ours: the lapsed ones are `canceled`; `incomplete` (first payment
# pending) is treated as past_due (allowed, not yet paid).
_STATUS = {
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "incomplete": "past_due",
    "canceled": "canceled",
    "unpaid": "canceled",
    "incomplete_expired": "canceled",
    "paused": "canceled",
}


class PlanNotOffered(Conflict):
    code = "plan_not_offered"
    message = "The operator does not sell a platform plan (PLATFORM_PRICE_ID is unset)."


class PlanAlreadyActive(Conflict):
    code = "plan_already_active"
    message = "This platform already has a subscription; manage it in the billing portal."


class NoPlanSubscription(BadRequest):
    code = "no_subscription"
    message = "No subscription found: this platform never subscribed."


class PlatformNotFound(NotFound):
    code = "platform_not_found"
    message = "Platform not found."


def offered(settings: Settings) -> bool:
    return bool(settings.platform_price_id)


def is_platform_event(event: dict[str, Any], obj: dict[str, Any]) -> bool:
    """An event on the operator's own account (no `account`) about a platform subscription."""
    metadata = obj.get("metadata")
    return (
        event.get("account") is None and isinstance(metadata, dict) and metadata.get("kind") == KIND
    )


async def _platform(session: AsyncSession, platform_id: str) -> Platform:
    platform = await session.get(Platform, platform_id)
    if platform is None:
        raise PlatformNotFound()
    return platform


def _return_url(settings: Settings, base_url: str, query: str = "") -> str:
    return urljoin(base_url, settings.platform_return_url) + query


# --- checkout and portal ------------------------------------------------------------------


async def start_checkout(
    session: AsyncSession,
    gateway: StripeGateway,
    settings: Settings,
    *,
    platform_id: str,
    developer_id: str,
    base_url: str,
) -> str:
    """The Checkout URL of the operator's plan for this platform."""
    if not settings.platform_price_id:
        raise PlanNotOffered()
    platform = await _platform(session, platform_id)
    if platform.plan_status in PLAN_ALLOWED_STATUSES:
        raise PlanAlreadyActive()
    developer = await session.get(Developer, developer_id)
    line_items: list[dict[str, Any]] = [{"price": settings.platform_price_id, "quantity": 1}]
    if settings.platform_overage_price_id:  # metered: Stripe takes no quantity
        line_items.append({"price": settings.platform_overage_price_id})
    created = await gateway.create_checkout_session(
        mode=settings.platform_stripe_mode,
        account_id=None,
        checkout_mode="subscription",
        line_items=line_items,
        success_url=_return_url(settings, base_url, "?plan=success"),
        cancel_url=_return_url(settings, base_url, "?plan=cancelled"),
        metadata={"kind": KIND, "platformId": platform.id},
        client_reference_id=platform.id,
        customer_id=platform.stripe_customer_id,
        customer_email=developer.email if developer is not None else None,
        # A first subscription only: a returning platform had its free days.
        trial_days=settings.platform_trial_days if platform.plan_status == "none" else None,
    )
    return created.url


async def portal(
    session: AsyncSession,
    gateway: StripeGateway,
    settings: Settings,
    *,
    platform_id: str,
    return_url: str | None,
    base_url: str,
) -> str:
    if not settings.platform_price_id:
        raise PlanNotOffered()
    platform = await _platform(session, platform_id)
    if platform.stripe_customer_id is None:
        raise NoPlanSubscription()
    return await gateway.create_portal_session(
        mode=settings.platform_stripe_mode,
        account_id=None,
        customer_id=platform.stripe_customer_id,
        return_url=(
            allowed_url(return_url, "return_url") if return_url else _return_url(settings, base_url)
        ),
    )


# --- webhook ------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


async def on_event(
    session: AsyncSession,
    gateway: StripeGateway,
    *,
    mode: str,
    obj: dict[str, Any],
    subscription_id: str | None,
) -> Platform | None:
    """Re-read the platform's subscription from Stripe and store what it says now."""
    if subscription_id is None:
        return None
    platform_id = (obj.get("metadata") or {}).get("platformId")
    platform = await session.get(Platform, platform_id) if isinstance(platform_id, str) else None
    if platform is None or platform.is_home:
        log.warning("platform_plan_event_unattributed", subscription=subscription_id)
        return None
    sub = await gateway.retrieve_subscription(
        mode=mode, account_id=None, subscription_id=subscription_id
    )
    status = _STATUS.get(str(sub.get("status")), "canceled")
    # An older subscription ending never cancels the platform's newer one.
    newer = platform.stripe_subscription_id not in (None, subscription_id)
    if newer and status == "canceled" and platform.plan_status in PLAN_ALLOWED_STATUSES:
        return platform
    item = (sub.get("items") or {}).get("data") or [{}]
    period_end = _timestamp(item[0].get("current_period_end") or sub.get("current_period_end"))
    platform.plan_status = status
    platform.stripe_subscription_id = subscription_id
    platform.stripe_customer_id = subs.stripe_id(sub.get("customer")) or platform.stripe_customer_id
    # Deleted subscriptions keep the period they paid for: the grace runs from its end.
    platform.current_period_end = period_end or platform.current_period_end
    platform.trial_ends_at = _timestamp(sub.get("trial_end")) or platform.trial_ends_at
    await session.flush()
    return platform


# --- overview -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanOverview:
    status: str
    offered: bool
    trial_ends_at: datetime | None
    current_period_end: datetime | None
    live_end_users: int
    included_users: int
    overage_cents_per_user: float

    @property
    def overage_users(self) -> int:
        return max(0, self.live_end_users - self.included_users)

    @property
    def estimated_overage_cents(self) -> float:
        return self.overage_users * self.overage_cents_per_user


async def live_end_users(session: AsyncSession, platform_id: str) -> int:
    """End users (not erased) of the platform's live projects."""
    count = await session.scalar(
        select(func.count(User.id))
        .join(Project, Project.id == User.project_id)
        .where(
            Project.platform_id == platform_id,
            Project.mode == "live",
            User.erased_at.is_(None),
        )
    )
    return int(count or 0)


async def overview(session: AsyncSession, settings: Settings, platform_id: str) -> PlanOverview:
    platform = await _platform(session, platform_id)
    return PlanOverview(
        status=platform.plan_status,
        offered=offered(settings),
        trial_ends_at=platform.trial_ends_at,
        current_period_end=platform.current_period_end,
        live_end_users=await live_end_users(session, platform_id),
        included_users=settings.platform_included_end_users,
        overage_cents_per_user=settings.platform_overage_cents_per_user,
    )


# --- usage meter --------------------------------------------------------------------------

_METERED_STATUSES = ("trialing", "active")


async def report_usage(
    session: AsyncSession, gateway: StripeGateway, settings: Settings, now: datetime
) -> int:
    """Send each paying platform's live end-user count to Stripe's meter; how many were sent.

    Every non-home platform that is trialing or active and has a Stripe customer gets one
    meter event (PLATFORM_METER_EVENT_NAME, on the operator's own account) whose value is
    `live_end_users(...)` now. The event's identifier is `"{platform_id}:{YYYY-MM-DD}"` (UTC
    day of `now`): Stripe keeps identifiers unique for at least 24 hours and refuses a
    repeat, so a rerun (another replica, a restart) the same day cannot double-count (the
    refusal is then logged below like any failure).
    The meter is meant to aggregate with `last` (the count is a level, not an increment).
    A Stripe failure for one platform is logged and the others are still sent. Off (0, no
    Stripe call) while PLATFORM_PRICE_ID is unset.
    """
    if not offered(settings):
        return 0
    mode = settings.platform_stripe_mode
    if not gateway.configured(mode):
        log.warning("platform_meter_not_configured", mode=mode)
        return 0
    platforms = (
        await session.execute(
            select(Platform.id, Platform.stripe_customer_id)
            .where(
                Platform.is_home.is_(False),
                Platform.plan_status.in_(_METERED_STATUSES),
                Platform.stripe_customer_id.is_not(None),
            )
            .order_by(Platform.id)
        )
    ).all()
    day = now.astimezone(UTC).date().isoformat()
    timestamp = int(now.timestamp())
    sent = 0
    for platform_id, customer_id in platforms:
        count = await live_end_users(session, platform_id)
        try:
            await gateway.create_meter_event(
                mode=mode,
                event_name=settings.platform_meter_event_name,
                customer_id=str(customer_id),  # not NULL: filtered above
                value=count,
                identifier=f"{platform_id}:{day}",
                timestamp=timestamp,
            )
        except StripeFailure as exc:
            log.warning("platform_meter_failed", platform=platform_id, message=exc.message)
            continue
        sent += 1
    return sent
