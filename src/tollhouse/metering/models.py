"""Usage counters (one per end user: the current period's count) and a daily series."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base
from tollhouse.kit.clock import utcnow


class UsageCounter(Base):
    __tablename__ = "usage_counters"
    __table_args__ = (CheckConstraint("count >= 0", name="count_not_negative"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    count: Mapped[int] = mapped_column(default=0)
    # The plan whose period this is (a plan change starts a new period).
    plan: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageDaily(Base):
    """Units tracked per user per UTC day, for the dashboard's series."""

    __tablename__ = "usage_daily"
    __table_args__ = (
        UniqueConstraint("user_id", "day"),
        Index("ix_usage_daily_project_id_day", "project_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    day: Mapped[date]
    units: Mapped[int] = mapped_column(default=0)
