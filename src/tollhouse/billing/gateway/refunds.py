"""Taking refunded credits back: as much as the balance allows, the rest recorded as a flag.

Balances never go negative, so a refund after the credits were spent cannot take them all
back. The account row is locked first (a no-op UPDATE: PostgreSQL's row lock, SQLite's write
lock), so the balance read under it stays true until commit; then the ledger's own `spend`
writes the `refund` row (negative amount) and the shortfall goes to `unrecovered_credits`.
The log still sums to the balance, and the balance stays >= 0.

Callers make each refund happen once (a conditional update on their own record first).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.kit.clock import utcnow
from tollhouse.ledger import service as ledger
from tollhouse.ledger.models import CreditAccount, CreditTransaction

_accounts = cast(Table, CreditAccount.__table__)


@dataclass(frozen=True, slots=True)
class TakeBack:
    taken: int
    unrecovered: int
    balance: int


async def take_back(
    session: AsyncSession,
    account_id: uuid.UUID,
    amount: int,
    *,
    idempotency_key: str,
    reference_id: str,
    description: str,
    reason: str,
) -> TakeBack:
    balance = await _lock_balance(session, account_id)
    taken = min(balance, amount)
    if taken > 0:
        entry = await ledger.spend(
            session,
            account_id,
            taken,
            "refund",
            description=description,
            reference_id=reference_id,
            idempotency_key=idempotency_key,
        )
        balance = entry.balance_after
    unrecovered = amount - taken
    if unrecovered > 0:
        await session.execute(
            update(_accounts)
            .where(_accounts.c.id == account_id)
            .values(
                unrecovered_credits=_accounts.c.unrecovered_credits + unrecovered,
                flagged_reason=f"{reason}: {unrecovered} credits not recovered"[:200],
                updated_at=utcnow(),
            )
        )
    return TakeBack(taken=taken, unrecovered=unrecovered, balance=balance)


async def _lock_balance(session: AsyncSession, account_id: uuid.UUID) -> int:
    balance = await session.scalar(
        update(_accounts)
        .where(_accounts.c.id == account_id)
        .values(balance=_accounts.c.balance)
        .returning(_accounts.c.balance)
    )
    assert balance is not None, "the account exists: it was granted what is refunded"
    return int(balance)


async def granted_for(
    session: AsyncSession, account_id: uuid.UUID, reference_id: str, types: Sequence[str]
) -> int:
    """What the log granted this account under one reference (a purchase and its months)."""
    total = await session.scalar(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.account_id == account_id,
            CreditTransaction.reference_id == reference_id,
            CreditTransaction.type.in_(types),
            CreditTransaction.amount > 0,
        )
    )
    return int(total or 0)
