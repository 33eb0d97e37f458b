"""customer credit types: api_grant and api_spend

A platform developer grants and spends their end users' credits through the Platform API;
those moves get types of their own so the log never mislabels them as Gateway work.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "signup_bonus",
    "generation",
    "chat",
    "temporal",
    "admin_grant",
    "apple_iap",
    "stripe_purchase",
    "subscription_grant",
    "refund",
)
AFTER = (*BEFORE, "api_grant", "api_spend")
APPEND_ONLY = "credit_transactions is append-only: record a correcting transaction instead"


def _type_check(types: tuple[str, ...]) -> str:
    return "type IN (" + ", ".join(f"'{name}'" for name in types) + ")"


def _replace_type_check(types: tuple[str, ...]) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite rebuilds the table to change a CHECK, and the rebuild drops its triggers.
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER credit_transactions_no_{action}")
    with op.batch_alter_table("credit_transactions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_credit_transactions_type_known"), type_="check")
        batch_op.create_check_constraint("type_known", _type_check(types))
    if sqlite:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER credit_transactions_no_{action.lower()} BEFORE {action} "
                f"ON credit_transactions BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def upgrade() -> None:
    _replace_type_check(AFTER)


def downgrade() -> None:
    _replace_type_check(BEFORE)
