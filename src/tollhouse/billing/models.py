"""Billing's tables: Connect accounts, subscriptions, orders with inventory holds, the inbox.

Every external event (Stripe webhook, Apple notification, Apple transaction) is inserted into
`webhook_inbox` first — `(source, event_id)` is unique — and handled in the same transaction,
so a duplicate delivery can never have a second effect.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.clock import utcnow
from tollhouse.kit.ids import new_id

SUBSCRIPTION_STATUSES = (
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
)
ORDER_STATUSES = ("pending", "paid", "expired", "refunded")
HOLD_STATUSES = ("held", "captured", "released")


class StripeConnection(CreatedAt, Base):
    """A platform's connected Stripe account in one mode; OAuth tokens encrypted at rest."""

    __tablename__ = "stripe_connections"
    __table_args__ = (
        UniqueConstraint("platform_id", "mode"),
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    platform_id: Mapped[str] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    account_id: Mapped[str] = mapped_column(String(255))
    access_token_encrypted: Mapped[str | None] = mapped_column(String(2000))
    refresh_token_encrypted: Mapped[str | None] = mapped_column(String(2000))
    scope: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthState(CreatedAt, Base):
    """A Connect OAuth `state`: single use (`used_at`), short-lived, stored as a hash."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform_id: Mapped[str] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Subscription(CreatedAt, Base):
    """An end user's (or home user's) subscription as Stripe last said it is."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_project_id_user_id", "project_id", "user_id"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in SUBSCRIPTION_STATUSES) + ")",
            name="status_known",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("sub"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # The tier slug the subscription pays for (derived from the price, never from metadata).
    plan: Mapped[str] = mapped_column(String(64))
    price_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(CreatedAt, Base):
    """A one-off cart checkout; its items hold inventory until paid, expired or timed out."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")",
            name="status_known",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ord"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    stripe_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    email: Mapped[str | None] = mapped_column(String(320))
    amount_total_cents: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    # Unpaid holds are released by the sweeper after this (and on checkout.session.expired).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    paid_at: Mapped[datetime | None]


class OrderItem(Base):
    """One line of an order: the inventory it holds (`status`) until the order settles."""

    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in HOLD_STATUSES) + ")",
            name="status_known",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    tier_id: Mapped[str] = mapped_column(ForeignKey("tiers.id", ondelete="RESTRICT"), index=True)
    quantity: Mapped[int]
    unit_amount_cents: Mapped[int] = mapped_column(default=0)
    # Held while the order is pending; holds on unlimited-stock items hold nothing.
    status: Mapped[str] = mapped_column(String(10), default="held")


class InboxEvent(Base):
    """Every external event, inserted before it is handled (the dedupe is the unique key)."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_webhook_inbox_project_id_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    project_id: Mapped[str | None] = mapped_column(String(40))
    # A short summary for the dashboard (never the full payload: it holds customer data).
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
