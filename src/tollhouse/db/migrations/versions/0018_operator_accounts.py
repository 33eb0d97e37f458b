"""operator accounts (developers.is_operator)

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-03 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("developers") as batch:
        batch.add_column(
            sa.Column("is_operator", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("developers") as batch:
        batch.drop_column("is_operator")
