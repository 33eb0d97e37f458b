"""A customer's credits (`/api/customers/{id}/credits…`), on the ledger's own operations.

The developer's moves are logged as `api_grant` / `api_spend`: the Gateway's types name
its own work, and the log is append-only, so a wrong label could never be corrected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity.models import User
from tollhouse.kit.idempotency import Idempotency
from tollhouse.ledger import service as ledger
from tollhouse.platform_api import wire
from tollhouse.platform_api.schemas import CreditMove

GRANT_TYPE = "api_grant"
SPEND_TYPE = "api_spend"
Operation = Literal["grant", "spend"]


async def balance(session: AsyncSession, user: User) -> dict[str, Any]:
    return wire.credits(await ledger.ensure_account(session, user))


# Each operation: the ledger move, its log type, and the ledger's idempotency namespace.
_MOVES: dict[Operation, tuple[Callable[..., Awaitable[ledger.Entry]], str]] = {
    "grant": (ledger.grant, GRANT_TYPE),
    "spend": (ledger.spend, SPEND_TYPE),
}


async def move(
    session: AsyncSession,
    user: User,
    operation: Operation,
    body: CreditMove,
    idempotency: Idempotency,
) -> dict[str, Any]:
    """Grant or spend (402 `insufficient_credits` when a spend is short; nothing moves)."""
    apply, transaction_type = _MOVES[operation]
    account = await ledger.ensure_account(session, user)
    entry = await apply(
        session,
        account.id,
        body.amount,
        transaction_type,
        description=body.description,
        idempotency_key=idempotency.ledger_key(f"customer_{operation}"),
    )
    return {"success": True, "balance": entry.balance_after, "transaction": wire.transaction(entry)}


async def history(session: AsyncSession, user: User, limit: int, offset: int) -> dict[str, Any]:
    """Newest first."""
    account = await ledger.ensure_account(session, user)
    rows = await ledger.history(session, account.id, limit=limit, offset=offset)
    return {
        "transactions": [wire.transaction(row) for row in rows],
        "limit": limit,
        "offset": offset,
    }
