"""timepoint exports (blob path) and background tasks

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("timepoints") as batch:
        batch.add_column(sa.Column("blob_path", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("blob_written_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "background_tasks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_background_tasks")),
    )
    op.create_index(
        "ix_background_tasks_project_id_kind",
        "background_tasks",
        ["project_id", "kind"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_background_tasks_project_id_kind", table_name="background_tasks")
    op.drop_table("background_tasks")
    with op.batch_alter_table("timepoints") as batch:
        batch.drop_column("blob_written_at")
        batch.drop_column("blob_path")
