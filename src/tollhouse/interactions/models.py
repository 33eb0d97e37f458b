"""Chat sessions, stored so that every replica sees them and they outlive a restart.

Messages are rows of their own: appending is an insert, so two replicas answering turns of
one session at once never overwrite each other's messages.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.db.types import UTCDateTime
from tollhouse.kit.clock import utcnow

ROLES = ("user", "character", "system")


def _in(values: tuple[str, ...], column: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class InteractionSession(CreatedAt, Base):
    __tablename__ = "interaction_sessions"
    __table_args__ = (
        Index("ix_interaction_sessions_timepoint_id_user_id", "timepoint_id", "user_id"),
    )

    # A string: the contract's ids are opaque and an unknown one is a 404, never a 422.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # No owner: opened by a caller without a user (system, anonymous); only such callers see it.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    timepoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timepoints.id", ondelete="CASCADE"))
    character_name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InteractionMessage(CreatedAt, Base):
    __tablename__ = "interaction_messages"
    __table_args__ = (CheckConstraint(_in(ROLES, "role"), name="role_known"),)

    # Orders a session's messages (the created_at of a user's message and its answer tie).
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("interaction_sessions.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    character_name: Mapped[str | None] = mapped_column(String(200))
