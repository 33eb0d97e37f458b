"""platforms: the platform's subscription to the operator's plan

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("platforms", schema=None) as batch_op:
        # The server default fills the platforms that exist (never subscribed).
        batch_op.add_column(
            sa.Column("plan_status", sa.String(length=10), nullable=False, server_default="none")
        )
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("stripe_subscription_id", sa.String(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_platforms_stripe_customer_id"), ["stripe_customer_id"], unique=False
        )
        batch_op.create_check_constraint(
            "plan_status",
            "plan_status IN ('none', 'trialing', 'active', 'past_due', 'canceled')",
        )


def downgrade() -> None:
    with op.batch_alter_table("platforms", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_platforms_plan_status"), type_="check")
        batch_op.drop_index(batch_op.f("ix_platforms_stripe_customer_id"))
        batch_op.drop_column("trial_ends_at")
        batch_op.drop_column("current_period_end")
        batch_op.drop_column("stripe_subscription_id")
        batch_op.drop_column("stripe_customer_id")
        batch_op.drop_column("plan_status")
