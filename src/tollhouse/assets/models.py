"""Asset records; the bytes live on the storage port under `assets/<key>`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.ids import new_id


class Asset(CreatedAt, Base):
    """One uploaded file of one project (and so of one mode).

    `project_id` becomes null when the project is deleted and `deleted_at` is set by DELETE:
    either way the asset stops being served at once and the purge job removes its bytes, then
    the row.
    """

    __tablename__ = "assets"
    __table_args__ = (Index("ix_assets_project_id_deleted_at", "project_id", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ast"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    key: Mapped[str] = mapped_column(String(400), unique=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    deleted_at: Mapped[datetime | None]
