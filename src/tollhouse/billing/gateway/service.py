"""Gateway billing's state per app (catalogue, Apple verifier) and the status read."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from fastapi import Request
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.apple.errors import AppleNotConfigured
from tollhouse.billing.apple.models import AppleTransaction
from tollhouse.billing.apple.verifier import AppleVerifier
from tollhouse.billing.credits import IN_PROCESS, Credits
from tollhouse.billing.gateway.products import Catalogue
from tollhouse.billing.gateway.schemas import (
    AccountFlag,
    PurchaseOut,
    StatusResponse,
    SubscriptionOut,
)
from tollhouse.billing.models import Subscription
from tollhouse.config import ConfigError, Settings
from tollhouse.identity.caller import identity_context
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.ledger import service as ledger
from tollhouse.ledger.models import CreditTransaction

log = structlog.get_logger("tollhouse.billing")

PURCHASE_TYPES = ("apple_iap", "stripe_purchase", "subscription_grant")
LIVE_STRIPE_STATUSES = ("active", "trialing", "past_due")
RECENT_PURCHASES = 10


@dataclass(frozen=True, slots=True)
class GatewayBilling:
    catalogue: Catalogue
    apple: AppleVerifier | None
    # Why Apple is off, when its configuration is incomplete or wrong (shown in the 503).
    apple_problem: str | None
    # The ledger: this process's, or the gateway's over HTTP (`--role billing`).
    credits: Credits = IN_PROCESS

    @classmethod
    def from_settings(cls, settings: Settings, credits: Credits = IN_PROCESS) -> GatewayBilling:
        catalogue = Catalogue.from_settings(settings)
        try:
            return cls(catalogue, AppleVerifier.from_settings(settings), None, credits)
        except ConfigError as exc:
            log.error("apple_not_configured", problem=str(exc))
            return cls(catalogue, None, str(exc), credits)

    def apple_verifier(self) -> AppleVerifier:
        if self.apple is None:
            raise AppleNotConfigured(self.apple_problem)
        return self.apple


def gateway_billing(request: Request) -> GatewayBilling:
    """Built on first use and kept for the app's life."""
    state = request.app.state
    billing: GatewayBilling | None = getattr(state, "gateway_billing", None)
    if billing is None:
        billing = GatewayBilling.from_settings(identity_context(request).settings)
        state.gateway_billing = billing
    return billing


async def status(session: AsyncSession, user: User, catalogue: Catalogue) -> StatusResponse:
    account = await ledger.ensure_account(session, user)
    rows = await session.scalars(
        select(CreditTransaction)
        .where(
            CreditTransaction.account_id == account.id,
            or_(
                CreditTransaction.type.in_(PURCHASE_TYPES),
                # Refunds taking purchases back (hold releases are positive refunds).
                (CreditTransaction.type == "refund") & (CreditTransaction.amount < 0),
            ),
        )
        .order_by(CreditTransaction.id.desc())
        .limit(RECENT_PURCHASES)
    )
    flag = None
    if account.unrecovered_credits > 0:
        flag = AccountFlag(
            unrecovered_credits=account.unrecovered_credits, reason=account.flagged_reason
        )
    subscription = await _stripe_subscription(session, user) or await _apple_subscription(
        session, user, catalogue
    )
    plan = catalogue.get(subscription.product_id) if subscription else None
    return StatusResponse(
        user_id=str(user.id),
        subscription_tier=(plan.tier if plan else None)
        or (subscription.product_id if subscription else "free"),
        status=subscription.status if subscription else "none",
        balance=account.balance,
        lifetime_earned=account.lifetime_earned,
        lifetime_spent=account.lifetime_spent,
        subscription=subscription,
        recent_purchases=[
            PurchaseOut(
                transaction_id=row.id,
                type=row.type,
                amount=row.amount,
                balance_after=row.balance_after,
                reference_id=row.reference_id,
                description=row.description,
                created_at=row.created_at,
            )
            for row in rows
        ],
        flag=flag,
    )


async def _stripe_subscription(session: AsyncSession, user: User) -> SubscriptionOut | None:
    row = await session.scalar(
        select(Subscription)
        .where(
            Subscription.project_id == user.project_id,
            Subscription.user_id == user.id,
            Subscription.status.in_(LIVE_STRIPE_STATUSES),
        )
        .order_by(Subscription.created_at.desc())
        .limit(1)
    )
    if row is None:
        return None
    return SubscriptionOut(
        provider="stripe",
        product_id=row.plan,
        status=row.status,
        credits_per_month=None,
        current_period_end=row.current_period_end,
        cancel_at_period_end=row.cancel_at_period_end,
    )


async def _apple_subscription(
    session: AsyncSession, user: User, catalogue: Catalogue
) -> SubscriptionOut | None:
    row = await session.scalar(
        select(AppleTransaction)
        .where(
            AppleTransaction.project_id == user.project_id,
            AppleTransaction.user_id == user.id,
            AppleTransaction.kind == "subscription",
            AppleTransaction.refunded_at.is_(None),
            AppleTransaction.expires_at > utcnow(),
        )
        .order_by(AppleTransaction.expires_at.desc())
        .limit(1)
    )
    if row is None:
        return None
    return SubscriptionOut(
        provider="apple",
        product_id=row.product_id,
        status="active",
        credits_per_month=row.credits,
        current_period_end=row.expires_at,
    )
