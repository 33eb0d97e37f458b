"""The ledger's rules. Every balance change is one conditional UPDATE plus its log row.

    UPDATE credit_accounts SET balance = balance + :delta, …
     WHERE id = :account AND balance >= :needed          -- only for debits
    RETURNING balance                                     -- becomes the row's balance_after

Nothing reads a balance and writes it back, so concurrent spends can never overdraw and the
log's running sum always equals the balance. Functions flush, never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.dialect import insert_ignoring_conflicts
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.ledger.errors import InsufficientCredits
from tollhouse.ledger.models import CreditAccount, CreditHold, CreditTransaction

SIGNUP_IDEMPOTENCY_KEY = "signup_bonus"


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the log as written (cheaper to hand back than an ORM instance)."""

    id: int
    account_id: uuid.UUID
    amount: int
    balance_after: int
    type: str
    reference_id: str | None
    description: str | None
    idempotency_key: str | None
    hold_id: uuid.UUID | None
    created_at: datetime


async def ensure_account(session: AsyncSession, user: User) -> CreditAccount:
    """The user's account, created (empty) on first need; safe to race."""
    query = (
        select(CreditAccount)
        .where(CreditAccount.user_id == user.id, CreditAccount.project_id == user.project_id)
        .execution_options(populate_existing=True)
    )
    account = await session.scalar(query)
    if account is None:
        await session.execute(
            insert_ignoring_conflicts(session, CreditAccount).values(
                id=uuid.uuid4(), user_id=user.id, project_id=user.project_id
            )
        )
        account = await session.scalar(query)
    assert account is not None
    return account


async def _apply(
    session: AsyncSession,
    account_id: uuid.UUID,
    amount: int,
    *,
    type: str,
    earned: int = 0,
    spent: int = 0,
    reference_id: str | None = None,
    description: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    """Move `amount` (signed) on one account and log it, or raise InsufficientCredits."""

    async def move_and_log() -> Entry:
        balance_after = await _move(session, account_id, amount, earned=earned, spent=spent)
        return await _log(
            session,
            account_id,
            amount,
            balance_after,
            type=type,
            reference_id=reference_id,
            description=description,
            idempotency_key=idempotency_key,
        )

    if idempotency_key is None:
        return await move_and_log()
    earlier = await _by_idempotency_key(session, account_id, idempotency_key)
    if earlier is not None:
        return earlier
    try:
        async with session.begin_nested():
            return await move_and_log()
    except IntegrityError:
        # A concurrent call with the same idempotency key committed first: it is the answer.
        earlier = await _by_idempotency_key(session, account_id, idempotency_key)
        if earlier is None:
            raise
        return earlier


# Built once: the write path is hot, and a prebuilt Core statement skips both statement
# construction and the ORM's flush machinery (together about 60% of a spend's CPU).
_accounts = cast(Table, CreditAccount.__table__)
_transactions = cast(Table, CreditTransaction.__table__)
_holds = cast(Table, CreditHold.__table__)
_MOVE = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"), _accounts.c.balance >= bindparam("needed"))
    .values(
        balance=_accounts.c.balance + bindparam("amount"),
        lifetime_earned=_accounts.c.lifetime_earned + bindparam("earned"),
        lifetime_spent=_accounts.c.lifetime_spent + bindparam("spent"),
        updated_at=bindparam("now"),
    )
    .returning(_accounts.c.balance)
)
_LOG = insert(_transactions).returning(_transactions.c.id)
_HOLD = insert(_holds)
_SETTLE = (
    update(_holds)
    .where(_holds.c.id == bindparam("hold_id"), _holds.c.status == "held")
    .values(status=bindparam("status"), settled_at=bindparam("now"))
    .returning(_holds.c.account_id, _holds.c.amount, _holds.c.reason, _holds.c.reference_id)
)


async def _move(
    session: AsyncSession, account_id: uuid.UUID, amount: int, *, earned: int, spent: int
) -> int:
    """The one conditional UPDATE; returns the new balance or raises InsufficientCredits."""
    parameters = {
        "account_id": account_id,
        # A credit matches any balance (balances are never negative); a debit needs cover.
        "needed": max(-amount, 0),
        "amount": amount,
        "earned": earned,
        "spent": spent,
        "now": utcnow(),
    }
    balance_after = (await session.execute(_MOVE, parameters)).scalar()
    if balance_after is None:
        raise InsufficientCredits(await balance_of(session, account_id), -amount)
    return int(balance_after)


async def _log(
    session: AsyncSession,
    account_id: uuid.UUID,
    amount: int,
    balance_after: int,
    *,
    type: str,
    reference_id: str | None = None,
    description: str | None = None,
    idempotency_key: str | None = None,
    hold_id: uuid.UUID | None = None,
) -> Entry:
    """Append the log row."""
    values: dict[str, Any] = {
        "account_id": account_id,
        "amount": amount,
        "balance_after": balance_after,
        "type": type,
        "reference_id": reference_id,
        "description": description,
        "idempotency_key": idempotency_key,
        "hold_id": hold_id,
        "created_at": utcnow(),
    }
    transaction_id = (await session.execute(_LOG, values)).scalar_one()
    return Entry(id=transaction_id, **values)


async def _by_idempotency_key(
    session: AsyncSession, account_id: uuid.UUID, key: str
) -> Entry | None:
    row = (
        await session.execute(
            select(*_transactions.columns).where(
                _transactions.c.account_id == account_id, _transactions.c.idempotency_key == key
            )
        )
    ).one_or_none()
    return None if row is None else Entry(**row._mapping)


async def balance_of(session: AsyncSession, account_id: uuid.UUID) -> int:
    balance = await session.scalar(
        select(CreditAccount.balance).where(CreditAccount.id == account_id)
    )
    return int(balance or 0)


async def grant(
    session: AsyncSession,
    account_id: uuid.UUID,
    amount: int,
    type: str,
    *,
    description: str | None = None,
    reference_id: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    return await _apply(
        session,
        account_id,
        amount,
        type=type,
        earned=amount,
        description=description,
        reference_id=reference_id,
        idempotency_key=idempotency_key,
    )


async def spend(
    session: AsyncSession,
    account_id: uuid.UUID,
    amount: int,
    type: str,
    *,
    description: str | None = None,
    reference_id: str | None = None,
    idempotency_key: str | None = None,
) -> Entry:
    return await _apply(
        session,
        account_id,
        -amount,
        type=type,
        spent=amount,
        description=description,
        reference_id=reference_id,
        idempotency_key=idempotency_key,
    )


async def check(session: AsyncSession, account_id: uuid.UUID, cost: int) -> tuple[bool, int]:
    balance = await balance_of(session, account_id)
    return balance >= cost, balance


async def hold(
    session: AsyncSession,
    account_id: uuid.UUID,
    amount: int,
    reason: str,
    *,
    ttl: timedelta,
    reference_id: str | None = None,
    description: str | None = None,
) -> CreditHold:
    """Reserve `amount` now (a charge row in the log); capture keeps it, release refunds it."""
    balance_after = await _move(session, account_id, -amount, earned=0, spent=amount)
    now = utcnow()
    held = CreditHold(
        id=uuid.uuid4(),
        account_id=account_id,
        amount=amount,
        status="held",
        reason=reason,
        reference_id=reference_id,
        expires_at=now + ttl,
        settled_at=None,
        created_at=now,
    )
    await session.execute(
        _HOLD, {column.key: getattr(held, column.key) for column in _holds.columns}
    )
    await _log(
        session,
        account_id,
        -amount,
        balance_after,
        type=reason,
        reference_id=reference_id,
        description=description,
        hold_id=held.id,
    )
    return held


@dataclass(frozen=True, slots=True)
class _Settled:
    account_id: uuid.UUID
    amount: int
    reason: str
    reference_id: str | None


async def _settle(session: AsyncSession, hold_id: uuid.UUID, status: str) -> _Settled | None:
    """Move a hold out of `held`; None when it was already settled (settling is idempotent)."""
    row = (
        await session.execute(_SETTLE, {"hold_id": hold_id, "status": status, "now": utcnow()})
    ).one_or_none()
    return None if row is None else _Settled(*row)


async def capture_hold(session: AsyncSession, hold_id: uuid.UUID) -> bool:
    return await _settle(session, hold_id, "captured") is not None


async def release_hold(session: AsyncSession, hold_id: uuid.UUID) -> bool:
    released = await _settle(session, hold_id, "released")
    if released is None:
        return False
    balance_after = await _move(
        session, released.account_id, released.amount, earned=0, spent=-released.amount
    )
    await _log(
        session,
        released.account_id,
        released.amount,
        balance_after,
        type="refund",
        reference_id=released.reference_id,
        description=f"Refund: {released.reason} not completed",
        hold_id=hold_id,
    )
    return True


async def release_expired_holds(session: AsyncSession, now: datetime, limit: int = 500) -> int:
    """The sweeper: refund holds nobody settled before they expired (their process died)."""
    expired = await session.scalars(
        select(CreditHold.id)
        .where(CreditHold.status == "held", CreditHold.expires_at < now)
        .order_by(CreditHold.expires_at)
        .limit(limit)
    )
    return sum([await release_hold(session, hold_id) for hold_id in expired.all()])


async def history(
    session: AsyncSession, account_id: uuid.UUID, *, limit: int, offset: int
) -> list[CreditTransaction]:
    rows = await session.scalars(
        select(CreditTransaction)
        .where(CreditTransaction.account_id == account_id)
        .order_by(CreditTransaction.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class Mismatch:
    account_id: uuid.UUID
    user_id: uuid.UUID
    problem: str
    expected: int
    actual: int
    transaction_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditReport:
    accounts_checked: int
    transactions_checked: int
    mismatches: list[Mismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches


async def audit(session: AsyncSession) -> AuditReport:
    """Every balance equals the sum of its log, and every balance_after is a running sum."""
    logged = (
        select(func.coalesce(func.sum(CreditTransaction.amount), 0))
        .where(CreditTransaction.account_id == CreditAccount.id)
        .scalar_subquery()
    )
    balance_rows = await session.execute(
        select(CreditAccount.id, CreditAccount.user_id, CreditAccount.balance, logged).where(
            CreditAccount.balance != logged
        )
    )
    mismatches = [
        Mismatch(account_id, user_id, "balance_differs_from_log", int(total), int(balance))
        for account_id, user_id, balance, total in balance_rows
    ]
    running = select(
        CreditTransaction.id,
        CreditTransaction.account_id,
        CreditTransaction.balance_after,
        func.sum(CreditTransaction.amount)
        .over(partition_by=CreditTransaction.account_id, order_by=CreditTransaction.id)
        .label("running"),
    ).subquery()
    chain_rows = await session.execute(
        select(
            running.c.id,
            running.c.account_id,
            CreditAccount.user_id,
            running.c.running,
            running.c.balance_after,
        )
        .join(CreditAccount, CreditAccount.id == running.c.account_id)
        .where(running.c.running != running.c.balance_after)
        .order_by(running.c.account_id, running.c.id)
    )
    mismatches += [
        Mismatch(
            account_id, user_id, "balance_after_breaks_chain", int(expected), int(actual), tx_id
        )
        for tx_id, account_id, user_id, expected, actual in chain_rows
    ]
    accounts = await session.scalar(select(func.count()).select_from(CreditAccount))
    transactions = await session.scalar(select(func.count()).select_from(CreditTransaction))
    return AuditReport(int(accounts or 0), int(transactions or 0), mismatches)
