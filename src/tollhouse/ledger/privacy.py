"""The ledger's part of a user's GDPR export. Erasure keeps the log: it holds no personal data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity.models import User
from tollhouse.identity.privacy import export_section
from tollhouse.ledger.models import CreditAccount, CreditTransaction


@export_section("credit_history")
async def export_credit_history(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(CreditTransaction)
        .join(CreditAccount, CreditAccount.id == CreditTransaction.account_id)
        .where(CreditAccount.user_id == user.id, CreditAccount.project_id == user.project_id)
        .order_by(CreditTransaction.id)
    )
    return [
        {
            "amount": row.amount,
            "balance_after": row.balance_after,
            "type": row.type,
            "description": row.description,
            "reference_id": row.reference_id,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]
