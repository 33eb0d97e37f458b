"""credit ledger and idempotency

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 14:32:05.337641
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_idempotency_records_scope_key")),
    )
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_records_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "credit_cost_overrides",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.CheckConstraint("cost >= 0", name=op.f("ck_credit_cost_overrides_cost_not_negative")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_credit_cost_overrides_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_cost_overrides")),
        sa.UniqueConstraint(
            "project_id", "key", name=op.f("uq_credit_cost_overrides_project_id_key")
        ),
    )
    op.create_table(
        "credit_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_earned", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_spent", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_credit_accounts_balance_not_negative")),
        sa.CheckConstraint(
            "lifetime_earned >= 0", name=op.f("ck_credit_accounts_earned_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_credit_accounts_project_id_projects"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_credit_accounts_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_accounts")),
        sa.UniqueConstraint("user_id", name=op.f("uq_credit_accounts_user_id")),
    )
    with op.batch_alter_table("credit_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_accounts_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "credit_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("reference_id", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('held', 'captured', 'released')", name=op.f("ck_credit_holds_status_known")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_holds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["credit_accounts.id"],
            name=op.f("fk_credit_holds_account_id_credit_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_holds")),
    )
    with op.batch_alter_table("credit_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_holds_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_holds_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "credit_transactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("reference_id", sa.String(length=64), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "type IN ('signup_bonus', 'generation', 'chat', 'temporal', 'admin_grant', 'apple_iap', 'stripe_purchase', 'subscription_grant', 'refund')",
            name=op.f("ck_credit_transactions_type_known"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_credit_transactions_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["credit_accounts.id"],
            name=op.f("fk_credit_transactions_account_id_credit_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["credit_holds.id"],
            name=op.f("fk_credit_transactions_hold_id_credit_holds"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_transactions")),
        sa.UniqueConstraint(
            "account_id",
            "idempotency_key",
            name=op.f("uq_credit_transactions_account_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credit_transactions_account_id_id", ["account_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_transactions_hold_id"), ["hold_id"], unique=False
        )

    _make_transactions_append_only()


APPEND_ONLY = "credit_transactions is append-only: record a correcting transaction instead"


def _make_transactions_append_only() -> None:
    """The database itself refuses UPDATE and DELETE on the log, whoever asks."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION credit_transactions_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER credit_transactions_append_only BEFORE UPDATE OR DELETE "
            "ON credit_transactions FOR EACH ROW EXECUTE FUNCTION credit_transactions_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER credit_transactions_no_{action.lower()} BEFORE {action} "
            f"ON credit_transactions BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER credit_transactions_append_only ON credit_transactions")
        op.execute("DROP FUNCTION credit_transactions_append_only()")
        return
    for action in ("update", "delete"):
        op.execute(f"DROP TRIGGER credit_transactions_no_{action}")


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_transactions_hold_id"))
        batch_op.drop_index("ix_credit_transactions_account_id_id")

    op.drop_table("credit_transactions")
    with op.batch_alter_table("credit_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_holds_expires_at"))
        batch_op.drop_index(batch_op.f("ix_credit_holds_account_id"))

    op.drop_table("credit_holds")
    with op.batch_alter_table("credit_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_accounts_project_id"))

    op.drop_table("credit_accounts")
    op.drop_table("credit_cost_overrides")
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_records_expires_at"))

    op.drop_table("idempotency_records")
