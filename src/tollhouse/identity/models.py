"""Users (one per external id per project) and refresh tokens (stored only as hashes)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.clock import utcnow

EXTERNAL_ID_MAX = 255
EMAIL_MAX = 320
DISPLAY_NAME_MAX = 200


class User(CreatedAt, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("project_id", "external_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # Null once the user is erased, so the id can be claimed again by a new sign-up.
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_MAX))
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    display_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX))
    is_active: Mapped[bool] = mapped_column(default=True)
    # Platform API end users: the plan their developer (or a token) gave them, and names.
    plan: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX))
    last_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX))
    last_login_at: Mapped[datetime | None]
    erased_at: Mapped[datetime | None]


class RefreshToken(CreatedAt, Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Every token rotated from one sign-in shares a family; reuse of any revokes them all.
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class EndUserCredential(CreatedAt, Base):
    """A password account of a platform project's end user (hosted sign-up pages).

    One per email per project: the unique constraint is how concurrent sign-ups of one
    address are told apart (insert first). The password is an argon2id hash.
    """

    __tablename__ = "end_user_credentials"
    __table_args__ = (UniqueConstraint("project_id", "email"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    password_hash: Mapped[str] = mapped_column(String(255))
    # Hosted-page sessions that began before this are signed out (a reset ends them all).
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    email_verified_at: Mapped[datetime | None]


class EndUserTicket(CreatedAt, Base):
    """A single-use link sent by mail (verify the address, reset the password), stored as a
    keyed hash; `used_at` is set by one conditional update, so a link works once."""

    __tablename__ = "end_user_tickets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class ErasedIdentity(CreatedAt, Base):
    """What is left of an erased user's external id: its keyed hash (older rows: a plain
    SHA-256, still honoured), so a sign-up under the same id
    is known to be a returning person (no second welcome bonus) without keeping the id."""

    __tablename__ = "erased_identities"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    external_id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
