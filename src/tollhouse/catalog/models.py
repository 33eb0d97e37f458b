"""A project's catalog: tiers (subscriptions, usage limits) and products (one-off, inventory).

One table for both, as in the Platform API: `billing_mode` says which. A project's type locks
what it may hold (store ⇔ one_off; saas and membership ⇔ subscription).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.clock import utcnow
from tollhouse.kit.ids import new_id

BILLING_MODES = ("subscription", "one_off")
PERIODS = ("rolling_30d", "calendar_month")


class Tier(CreatedAt, Base):
    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("project_id", "slug"),
        CheckConstraint("billing_mode IN ('subscription', 'one_off')", name="billing_mode"),
        CheckConstraint("period IN ('rolling_30d', 'calendar_month')", name="period"),
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint('"limit" IS NULL OR "limit" >= 0', name="limit_not_negative"),
        CheckConstraint("inventory IS NULL OR inventory >= 0", name="inventory_not_negative"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tier"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # The plan string end users carry (lower-case slug of the name).
    slug: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    # Usage units per period; null = unlimited.
    limit: Mapped[int | None] = mapped_column("limit", Integer)
    period: Mapped[str] = mapped_column(String(16), default="rolling_30d")
    billing_mode: Mapped[str] = mapped_column(String(12), default="subscription")
    features: Mapped[list[str]] = mapped_column(JSON, default=list)
    image_url: Mapped[str | None] = mapped_column(String(1000))
    # One-off stock; null = unlimited.
    inventory: Mapped[int | None] = mapped_column(Integer)
    popular: Mapped[bool] = mapped_column(default=False)
    trial_days: Mapped[int] = mapped_column(Integer, default=0)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255))
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
