"""Timepoints (generated scenes) and the per-step log of how each was made."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.db.types import UTCDateTime
from tollhouse.kit.clock import utcnow

STATUSES = ("processing", "completed", "failed")
VISIBILITIES = ("public", "private")


def _in(values: tuple[str, ...], column: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Timepoint(CreatedAt, Base):
    __tablename__ = "timepoints"
    __table_args__ = (
        CheckConstraint(_in(STATUSES, "status"), name="status_known"),
        CheckConstraint(_in(VISIBILITIES, "visibility"), name="visibility_known"),
        Index("ix_timepoints_project_id_created_at", "project_id", "created_at"),
        Index("ix_timepoints_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # No owner: made by an anonymous or system caller (always public).
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    query: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(String(150), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    visibility: Mapped[str] = mapped_column(String(10), default="public")
    preset: Mapped[str] = mapped_column(String(40))
    generate_image: Mapped[bool] = mapped_column(default=False)

    year: Mapped[int | None] = mapped_column(Integer)
    month: Mapped[int | None] = mapped_column(Integer)
    day: Mapped[int | None] = mapped_column(Integer)
    season: Mapped[str | None] = mapped_column(String(40))
    time_of_day: Mapped[str | None] = mapped_column(String(40))
    era: Mapped[str | None] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(500))

    # The scene itself: every agent's output, keyed as in flash-contract §4.5.
    tdf_payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tdf_hash: Mapped[str | None] = mapped_column(String(64))
    # The image lives in the storage port; the row keeps its key and type only.
    image_key: Mapped[str | None] = mapped_column(String(300))
    # Where export / write_blob last wrote the TDF record in storage, and when.
    blob_path: Mapped[str | None] = mapped_column(String(300))
    blob_written_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    image_content_type: Mapped[str | None] = mapped_column(String(50))

    text_model_used: Mapped[str | None] = mapped_column(String(200))
    image_model_used: Mapped[str | None] = mapped_column(String(200))
    generation_time_ms: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)

    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("timepoints.id", ondelete="SET NULL")
    )
    sequence_id: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)

    is_deleted: Mapped[bool] = mapped_column(default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenerationLog(CreatedAt, Base):
    """One row per pipeline step: what ran, on which model, how long, how many tokens."""

    __tablename__ = "generation_logs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    timepoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("timepoints.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class ImageDeletion(CreatedAt, Base):
    """An image whose timepoint is gone (permanent delete, GDPR erasure), waiting for the
    storage sweeper: written in the same transaction as the row's removal, so a rolled-back
    request deletes nothing and a committed one always loses its image."""

    __tablename__ = "image_deletions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    image_key: Mapped[str] = mapped_column(String(300))
