"""The credits port: the few ledger operations billing needs, in-process or over HTTP.

Billing sits above the ledger. In one process (`--role all|gateway`) it calls
`ledger.service` and `refunds.take_back` in the caller's transaction (`InProcessCredits`).
As a separate process (`--role billing`) it calls the gateway's `/internal/credits/*` with
`X-Service-Key: BILLING_API_KEY` (`HttpCredits`); every move carries an `Idempotency-Key`, so
a retry after a lost response cannot move credits twice.

Take-back has no shape in the ledger's internal API (it is billing's rule: never negative, the
shortfall flagged), and the ledger may not import billing, so its endpoint lives here
(`POST /internal/credits/take-back`) and the gateway mounts it next to the ledger's.

The two processes share the database (users, billing's tables); only the ledger is written
through the gateway. The gateway's write is its own transaction, so `HttpCredits` commits the
caller's unit of work first: the gateway never waits on our locks (SQLite has one writer, and
a fresh account row would block PostgreSQL's). Callers therefore make every move idempotent
by key and safe to repeat (`purchases.claim` re-issues its grant on a repeated claim).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Protocol

import httpx
from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.gateway import refunds
from tollhouse.billing.gateway.refunds import TakeBack
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import BillingCaller
from tollhouse.kit.errors import NotFound, ServiceUnavailable, TollhouseError
from tollhouse.kit.idempotency import HEADER, IdempotencyDep
from tollhouse.ledger import service as ledger
from tollhouse.ledger.models import CreditAccount
from tollhouse.ledger.schemas import Amount, Description

Short = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Credits(Protocol):
    async def grant(
        self,
        session: AsyncSession,
        account: CreditAccount,
        amount: int,
        type: str,
        *,
        description: str,
        reference_id: str,
        idempotency_key: str,
    ) -> int:
        """Grant once per key; returns the balance after the grant."""

    async def take_back(
        self,
        session: AsyncSession,
        account_id: uuid.UUID,
        amount: int,
        *,
        idempotency_key: str,
        reference_id: str,
        description: str,
        reason: str,
    ) -> TakeBack:
        """Take back up to the balance, once per key; the shortfall is recorded."""

    async def balance(self, session: AsyncSession, account: CreditAccount) -> int: ...

    async def close(self) -> None: ...


def ledger_key(operation: str, key: str) -> str:
    """The key as the ledger stores it, the same in both topologies (the internal API
    prefixes the operation), so switching topology can never grant one purchase twice."""
    return f"{operation}:{key}"


class InProcessCredits:
    """The ledger in this process, in the caller's transaction."""

    async def grant(
        self,
        session: AsyncSession,
        account: CreditAccount,
        amount: int,
        type: str,
        *,
        description: str,
        reference_id: str,
        idempotency_key: str,
    ) -> int:
        entry = await ledger.grant(
            session,
            account.id,
            amount,
            type,
            description=description,
            reference_id=reference_id,
            idempotency_key=ledger_key("grant", idempotency_key),
        )
        return entry.balance_after

    async def take_back(
        self,
        session: AsyncSession,
        account_id: uuid.UUID,
        amount: int,
        *,
        idempotency_key: str,
        reference_id: str,
        description: str,
        reason: str,
    ) -> TakeBack:
        return await refunds.take_back(
            session,
            account_id,
            amount,
            idempotency_key=ledger_key("take_back", idempotency_key),
            reference_id=reference_id,
            description=description,
            reason=reason,
        )

    async def balance(self, session: AsyncSession, account: CreditAccount) -> int:
        return await ledger.balance_of(session, account.id)

    async def close(self) -> None:
        return None


IN_PROCESS = InProcessCredits()


class LedgerUnavailable(ServiceUnavailable):
    code = "ledger_unavailable"
    message = "The gateway's ledger could not be reached."


class LedgerRefused(TollhouseError):
    status_code = 502
    code = "ledger_refused"
    message = "The gateway's ledger refused the request."


class HttpCredits:
    """The gateway's `/internal/credits/*`, through one pooled client."""

    def __init__(
        self,
        base_url: str,
        service_key: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"X-Service-Key": service_key},
            timeout=timeout,
            transport=transport,
        )

    async def _call(
        self, session: AsyncSession, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        # Our writes so far become durable first: the gateway must not wait on our locks.
        await session.commit()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(detail={"reason": type(exc).__name__}) from exc
        if response.status_code != 200:
            raise LedgerRefused(
                detail={"status": response.status_code, "upstream": response.text[:500]}
            )
        body: dict[str, Any] = response.json()
        return body

    async def grant(
        self,
        session: AsyncSession,
        account: CreditAccount,
        amount: int,
        type: str,
        *,
        description: str,
        reference_id: str,
        idempotency_key: str,
    ) -> int:
        body = await self._call(
            session,
            "POST",
            "/internal/credits/grant",
            json={
                "user_id": str(account.user_id),
                "amount": amount,
                "transaction_type": type,
                "description": description,
                "reference_id": reference_id,
            },
            headers={HEADER: idempotency_key},
        )
        return int(body["balance_after"])

    async def take_back(
        self,
        session: AsyncSession,
        account_id: uuid.UUID,
        amount: int,
        *,
        idempotency_key: str,
        reference_id: str,
        description: str,
        reason: str,
    ) -> TakeBack:
        body = await self._call(
            session,
            "POST",
            "/internal/credits/take-back",
            json=TakeBackRequest(
                account_id=account_id,
                amount=amount,
                reference_id=reference_id,
                description=description,
                reason=reason,
            ).model_dump(mode="json"),
            headers={HEADER: idempotency_key},
        )
        return TakeBack(
            taken=body["taken"], unrecovered=body["unrecovered"], balance=body["balance"]
        )

    async def balance(self, session: AsyncSession, account: CreditAccount) -> int:
        body = await self._call(
            session,
            "GET",
            "/internal/credits/check",
            params={"user_id": str(account.user_id), "cost": 0},
        )
        return int(body["balance"])

    async def close(self) -> None:
        await self.client.aclose()


# --- the take-back endpoint, mounted by the process that owns the ledger -------------------------


class TakeBackRequest(BaseModel):
    account_id: uuid.UUID
    amount: Amount
    reference_id: Short
    description: Description
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TakeBackResult(BaseModel):
    success: bool = True
    taken: int = Field(ge=0)
    unrecovered: int = Field(ge=0)
    balance: int


class IdempotencyKeyRequired(TollhouseError):
    code = "idempotency_key_required"
    message = "A take-back needs an Idempotency-Key."


internal = APIRouter(prefix="/internal/credits", tags=["internal"])


@internal.post("/take-back", response_model=TakeBackResult)
async def take_back(
    body: TakeBackRequest, caller: BillingCaller, session: SessionDep, idempotency: IdempotencyDep
) -> Any:
    """Refund: take back as much as the balance holds, record the rest (never negative)."""
    key = idempotency.ledger_key("take_back")
    if key is None:
        raise IdempotencyKeyRequired()
    account = await session.get(CreditAccount, body.account_id)
    if account is None or account.project_id != caller.project_id:
        raise NotFound("No such credit account.")

    async def work() -> TakeBackResult:
        result = await refunds.take_back(
            session,
            body.account_id,
            body.amount,
            idempotency_key=key,
            reference_id=body.reference_id,
            description=body.description,
            reason=body.reason,
        )
        return TakeBackResult(
            taken=result.taken, unrecovered=result.unrecovered, balance=result.balance
        )

    return await idempotency.run("billing", work)
