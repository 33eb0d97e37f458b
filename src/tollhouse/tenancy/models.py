"""Platforms own projects; a project is one name in one mode (test or live).

Developers sign in to the console and own one platform each; API keys belong to a project
(and so to its mode); every developer action is written to the audit log.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.ids import new_id

MODES = ("test", "live")
PROJECT_TYPES = ("saas", "store", "membership")
KEY_KINDS = ("publishable", "secret")
TOKEN_KINDS = ("session", "personal")
# The platform's own subscription to the operator's plan (`billing.platform_plan`).
PLAN_STATUSES = ("none", "trialing", "active", "past_due", "canceled")
DEFAULT_RATE_LIMIT_PER_MINUTE = 100


class Platform(CreatedAt, Base):
    __tablename__ = "platforms"
    __table_args__ = (
        CheckConstraint(
            "plan_status IN ('none', 'trialing', 'active', 'past_due', 'canceled')",
            name="plan_status",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("plt"))
    name: Mapped[str] = mapped_column(String(200))
    # The operator's own platform; exactly one may exist.
    is_home: Mapped[bool] = mapped_column(default=False)
    # Its subscription to the operator's plan, as Stripe last said (on the operator's account).
    plan_status: Mapped[str] = mapped_column(String(10), default="none", server_default="none")
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    current_period_end: Mapped[datetime | None]
    trial_ends_at: Mapped[datetime | None]


class Project(CreatedAt, Base):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("platform_id", "name", "mode"),
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("type IN ('saas', 'store', 'membership')", name="type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("prj"))
    platform_id: Mapped[str] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(12), default="saas")
    enable_tax: Mapped[bool] = mapped_column(default=False)
    # Requests per minute per end user and per key (the contract's 100/min, configurable).
    rate_limit_per_minute: Mapped[int] = mapped_column(default=DEFAULT_RATE_LIMIT_PER_MINUTE)
    # The project's own identity provider for end-user tokens (optional; ours always works).
    end_user_issuer: Mapped[str | None] = mapped_column(String(500))
    end_user_jwks_url: Mapped[str | None] = mapped_column(String(1000))
    end_user_audience: Mapped[str | None] = mapped_column(String(500))
    # The test project a live project was promoted from.
    promoted_from_id: Mapped[str | None] = mapped_column(String(40))


class ApiKey(CreatedAt, Base):
    """A publishable or secret key of one project. Secrets are stored only as keyed hashes.

    Active while `revoked_at` is null and `expires_at` (set by a roll's grace period) is in
    the future or null.
    """

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("kind IN ('publishable', 'secret')", name="kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Publishable keys are public and shown in full; secret keys only as prefix…last4.
    display: Mapped[str] = mapped_column(String(120))
    name: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    # The key this one replaced in a roll.
    rolled_from_id: Mapped[str | None] = mapped_column(String(40))


class Developer(CreatedAt, Base):
    __tablename__ = "developers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dev"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    platform_id: Mapped[str] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), unique=True
    )
    last_login_at: Mapped[datetime | None]
    # Set by `tollhouse operators add`: this account may also open the operator pages.
    is_operator: Mapped[bool] = mapped_column(default=False, server_default=false())


class DeveloperToken(CreatedAt, Base):
    """Console session cookies and personal access tokens (`dev_…`), stored as keyed hashes."""

    __tablename__ = "developer_tokens"
    __table_args__ = (CheckConstraint("kind IN ('session', 'personal')", name="kind"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    developer_id: Mapped[str] = mapped_column(
        ForeignKey("developers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    display: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AuditEntry(CreatedAt, Base):
    """One developer action; never updated."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_platform_id_id", "platform_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    platform_id: Mapped[str] = mapped_column(ForeignKey("platforms.id", ondelete="CASCADE"))
    developer_id: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ProjectOrigin(CreatedAt, Base):
    """An origin (`https://app.example`) the project's browsers call from and its hosted
    pages may redirect to: the allow-list that keeps `redirect=` from being an open one."""

    __tablename__ = "project_origins"
    __table_args__ = (UniqueConstraint("project_id", "origin"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    origin: Mapped[str] = mapped_column(String(300))
