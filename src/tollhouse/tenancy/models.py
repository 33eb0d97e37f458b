"""Platforms own projects; a project is one name in one mode (test or live)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.ids import new_id

MODES = ("test", "live")


class Platform(CreatedAt, Base):
    __tablename__ = "platforms"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("plt"))
    name: Mapped[str] = mapped_column(String(200))
    # The operator's own platform; exactly one may exist.
    is_home: Mapped[bool] = mapped_column(default=False)


class Project(CreatedAt, Base):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("platform_id", "name", "mode"),
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("prj"))
    platform_id: Mapped[str] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(4))
