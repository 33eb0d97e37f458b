"""`Cost("generate_hd", "generation")`: a route's price, held before it runs, settled after.

    @router.post("/things", dependencies=[...])
    async def make(charge: Annotated[Charge, Cost("generate_hd", "generation")]) -> …

The hold is committed before the handler starts (so long work never keeps a transaction
open). When the handler returns, the hold is captured in the request's own transaction;
when it raises, the hold is released (a refund row) and committed even though the request
fails. A handler that hands the work to a stream or a background job calls
`charge.defer()` and settles it there with `capture()` / `release()`; if its process dies,
the sweeper releases the hold once it expires. Unmetered callers get a free charge.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.engine import Database
from tollhouse.db.session import SessionDep, database
from tollhouse.identity.caller import Caller, GatewayCaller
from tollhouse.ledger import costs, service
from tollhouse.ledger.context import ledger_context

CostKey = str | Callable[[Request], Awaitable[str]]


@dataclass(slots=True)
class Charge:
    amount: int
    hold_id: uuid.UUID | None = None
    database: Database | None = None
    deferred: bool = field(default=False)

    @property
    def is_free(self) -> bool:
        return self.hold_id is None

    def defer(self) -> Charge:
        """The caller takes over settling (a stream or job will capture or release)."""
        self.deferred = True
        return self

    async def capture(self) -> bool:
        return await self._settle(service.capture_hold)

    async def release(self) -> bool:
        return await self._settle(service.release_hold)

    async def _settle(self, settle: Callable[[Any, uuid.UUID], Awaitable[bool]]) -> bool:
        if self.hold_id is None or self.database is None:
            return False
        async with self.database.session() as session:
            return await settle(session, self.hold_id)


async def hold_charge(
    request: Request,
    caller: Caller,
    session: AsyncSession,
    cost_key: str | int,
    transaction_type: str,
    *,
    reference_id: str | None = None,
    description: str | None = None,
    ttl: timedelta | None = None,
) -> Charge:
    """Hold what `cost_key` costs this caller (or that many credits, given a number), in the
    caller's transaction (not committed).

    402 `insufficient_credits` when the balance is short; a free Charge for unmetered callers.
    """
    if not caller.metered or caller.user is None:
        return Charge(amount=0)
    context = ledger_context(request)
    amount = (
        cost_key
        if isinstance(cost_key, int)
        else await costs.cost_of(session, caller.project_id, cost_key, context.costs)
    )
    if amount == 0:
        return Charge(amount=0)
    account = await service.ensure_account(session, caller.user)
    held = await service.hold(
        session,
        account.id,
        amount,
        transaction_type,
        ttl=ttl or context.hold_ttl,
        reference_id=reference_id,
        description=description or str(cost_key),
    )
    return Charge(amount=amount, hold_id=held.id, database=database(request))


def Cost(key: CostKey, transaction_type: str) -> Any:
    async def charge(
        request: Request, caller: GatewayCaller, session: SessionDep
    ) -> AsyncIterator[Charge]:
        cost_key = key if isinstance(key, str) else await key(request)
        paid = await hold_charge(request, caller, session, cost_key, transaction_type)
        if paid.is_free:
            yield paid
            return
        # Committed before the work starts: the hold survives whatever the handler does.
        await session.commit()
        async with settled(paid, session):
            yield paid

    return Depends(charge, scope="function")


@asynccontextmanager
async def settled(charge: Charge, session: AsyncSession) -> AsyncIterator[Charge]:
    """Work paid by a committed hold: captured in `session`'s transaction when the block
    ends normally, released (the refund committed) when it raises — unless deferred."""
    try:
        yield charge
    except BaseException:
        if charge.hold_id is not None and not charge.deferred:
            await session.rollback()
            await service.release_hold(session, charge.hold_id)
            await session.commit()
        raise
    if charge.hold_id is not None and not charge.deferred:
        await service.capture_hold(session, charge.hold_id)
