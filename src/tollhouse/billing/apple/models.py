"""Apple transactions we granted credits for: who owns them, what they granted, refunds."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt

KINDS = ("credit_pack", "subscription")


class AppleTransaction(CreatedAt, Base):
    """One App Store transaction (a purchase or one renewal), owned by the user who claimed it.

    Inserted in the same unit of work as its `apple_tx` inbox row and its ledger grant. A
    subscription transaction grants `credits` once per month of its period: the first month
    when it is claimed, later months (yearly plans) by the periodic job (`months_granted`).
    """

    __tablename__ = "apple_transactions"
    __table_args__ = (
        CheckConstraint("kind IN ('credit_pack', 'subscription')", name="kind_known"),
        CheckConstraint("credits > 0", name="credits_positive"),
        Index("ix_apple_transactions_user_id_purchased_at", "user_id", "purchased_at"),
        Index("ix_apple_transactions_kind_expires_at", "kind", "expires_at"),
    )

    transaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Renewals share it with the first purchase: it names the subscription.
    original_transaction_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_accounts.id", ondelete="RESTRICT")
    )
    # Our catalogue's product id, and Apple's.
    product_id: Mapped[str] = mapped_column(String(64))
    apple_product_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(12))
    # Per grant: a pack's total, a subscription's credits per month.
    credits: Mapped[int] = mapped_column(BigInteger)
    environment: Mapped[str] = mapped_column(String(16))
    purchased_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    months_granted: Mapped[int] = mapped_column(default=1)
    refunded_at: Mapped[datetime | None]
