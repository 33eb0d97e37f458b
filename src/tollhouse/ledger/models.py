"""Credit accounts, the append-only transaction log, holds, and per-project cost overrides."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.clock import utcnow

# SQLite autoincrements only a column spelled INTEGER PRIMARY KEY.
SequenceId = BigInteger().with_variant(Integer(), "sqlite")

TRANSACTION_TYPES = (
    "signup_bonus",
    "generation",
    "chat",
    "temporal",
    "admin_grant",
    "apple_iap",
    "stripe_purchase",
    "subscription_grant",
    "refund",
    # A platform developer moving their end users' credits (Platform API).
    "api_grant",
    "api_spend",
)
HOLD_STATUSES = ("held", "captured", "released")


def _in(values: tuple[str, ...], column: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class CreditAccount(CreatedAt, Base):
    __tablename__ = "credit_accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("lifetime_earned >= 0", name="earned_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), unique=True
    )
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="RESTRICT"), index=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Credits a refund could not take back (already spent; balances never go negative). Not
    # part of the balance: a flag for the operator, with the reason of the latest shortfall.
    unrecovered_credits: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    flagged_reason: Mapped[str | None] = mapped_column(String(200))


class CreditTransaction(CreatedAt, Base):
    """Append-only (a trigger refuses UPDATE and DELETE); ordered by `id` within an account."""

    __tablename__ = "credit_transactions"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key"),
        CheckConstraint(_in(TRANSACTION_TYPES, "type"), name="type_known"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        # History reads (newest first) and the audit's running sums walk this index.
        Index("ix_credit_transactions_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(SequenceId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_accounts.id", ondelete="RESTRICT")
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    hold_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("credit_holds.id"), index=True)


class CreditHold(CreatedAt, Base):
    __tablename__ = "credit_holds"
    __table_args__ = (
        CheckConstraint(_in(HOLD_STATUSES, "status"), name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_accounts.id", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="held")
    reason: Mapped[str] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    settled_at: Mapped[datetime | None]


class CreditCostOverride(Base):
    """A project's own price for one cost key (the defaults live in configuration)."""

    __tablename__ = "credit_cost_overrides"
    __table_args__ = (
        UniqueConstraint("project_id", "key"),
        CheckConstraint("cost >= 0", name="cost_not_negative"),
    )

    id: Mapped[int] = mapped_column(SequenceId, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    cost: Mapped[int] = mapped_column(Integer)
