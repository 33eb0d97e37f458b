"""upstream_routes: developers' APIs behind /gw/{project}/*

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upstream_routes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("path_prefix", sa.String(length=200), nullable=False),
        sa.Column("upstream_url", sa.String(length=2000), nullable=False),
        sa.Column("methods", sa.String(length=100), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("units >= 1", name=op.f("ck_upstream_routes_units_positive")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_upstream_routes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_routes")),
        sa.UniqueConstraint(
            "project_id", "path_prefix", name=op.f("uq_upstream_routes_project_id_path_prefix")
        ),
    )
    with op.batch_alter_table("upstream_routes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upstream_routes_project_id"), ["project_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("upstream_routes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upstream_routes_project_id"))

    op.drop_table("upstream_routes")
