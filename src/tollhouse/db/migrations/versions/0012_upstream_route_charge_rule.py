"""upstream_routes.charge_on: which upstream answers keep a /gw call's units counted

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upstream_routes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("charge_on", sa.String(length=100), server_default="2xx", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("upstream_routes", schema=None) as batch_op:
        batch_op.drop_column("charge_on")
