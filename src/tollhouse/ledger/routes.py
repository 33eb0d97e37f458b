"""Credits routes: /api/v1/credits/* (Gateway API) and /internal/credits/* (billing service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.session import SessionDep
from tollhouse.identity import service as identity
from tollhouse.identity.caller import AdminCaller, BillingCaller, CallerDep, UserCaller
from tollhouse.identity.models import User
from tollhouse.kit.idempotency import Idempotency, IdempotencyDep
from tollhouse.kit.paging import Limit, Offset
from tollhouse.ledger import costs, service
from tollhouse.ledger import privacy as _privacy  # noqa: F401 - registers the export section
from tollhouse.ledger.context import ledger_context
from tollhouse.ledger.models import CreditAccount
from tollhouse.ledger.schemas import (
    MAX_AMOUNT,
    AdminGrantRequest,
    AdminGrantResponse,
    AuditResponse,
    BalanceResponse,
    CheckResponse,
    CostOverridesRequest,
    CostsResponse,
    InternalGrantRequest,
    InternalResult,
    InternalSpendRequest,
    MismatchOut,
    TransactionOut,
    UserReference,
)

credits = APIRouter(prefix="/api/v1/credits", tags=["credits"])
internal = APIRouter(prefix="/internal/credits", tags=["internal"])


async def _account_of(session: SessionDep, user: User) -> CreditAccount:
    return await service.ensure_account(session, user)


async def _account_by_reference(
    session: SessionDep, project_id: str, reference: str
) -> CreditAccount:
    user = await identity.find_user(session, project_id, reference)
    return await service.ensure_account(session, user)


async def _move_credits(
    session: AsyncSession,
    idempotency: Idempotency,
    project_id: str,
    user_reference: str,
    move: Callable[..., Awaitable[service.Entry]],
    operation: str,
    amount: int,
    transaction_type: str,
    description: str | None,
    reference_id: str | None = None,
) -> service.Entry:
    """Grant or spend for the user named by id or external id, deduplicated by the request's
    Idempotency-Key (stored per `operation`, so one key never answers two kinds of move)."""
    account = await _account_by_reference(session, project_id, user_reference)
    return await move(
        session,
        account.id,
        amount,
        transaction_type,
        description=description,
        idempotency_key=idempotency.ledger_key(operation),
        **({"reference_id": reference_id} if reference_id is not None else {}),
    )


@credits.get("/balance", response_model=BalanceResponse)
async def balance(caller: UserCaller, session: SessionDep) -> BalanceResponse:
    assert caller.user is not None
    account = await _account_of(session, caller.user)
    return BalanceResponse(
        balance=account.balance,
        lifetime_earned=account.lifetime_earned,
        lifetime_spent=account.lifetime_spent,
    )


@credits.get("/history", response_model=list[TransactionOut])
async def history(
    caller: UserCaller,
    session: SessionDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> list[TransactionOut]:
    """The caller's transactions, newest first."""
    assert caller.user is not None
    account = await _account_of(session, caller.user)
    rows = await service.history(session, account.id, limit=limit, offset=offset)
    return [TransactionOut.model_validate(row, from_attributes=True) for row in rows]


@credits.get("/costs", response_model=CostsResponse)
async def costs_table(caller: CallerDep, request: Request, session: SessionDep) -> CostsResponse:
    table = await costs.project_costs(session, caller.project_id, ledger_context(request).costs)
    return CostsResponse(costs=table)


@credits.post("/admin/grant", response_model=AdminGrantResponse)
async def admin_grant(
    body: AdminGrantRequest, caller: AdminCaller, session: SessionDep, idempotency: IdempotencyDep
) -> Any:
    async def work() -> AdminGrantResponse:
        row = await _move_credits(
            session, idempotency, caller.project_id, body.user_id, service.grant, "admin_grant",
            body.amount, body.transaction_type, body.description,
        )  # fmt: skip
        return AdminGrantResponse(balance=row.balance_after, granted=body.amount)

    return await idempotency.run("admin", work)


@credits.put("/admin/costs", response_model=CostsResponse)
async def set_costs(
    body: CostOverridesRequest, caller: AdminCaller, request: Request, session: SessionDep
) -> CostsResponse:
    """Override prices for one project (the home project unless `project_id` is given)."""
    project_id = body.project_id or caller.project_id
    await costs.set_project_costs(session, project_id, body.costs)
    return CostsResponse(
        costs=await costs.project_costs(session, project_id, ledger_context(request).costs)
    )


@credits.get("/admin/audit", response_model=AuditResponse)
async def audit(_: AdminCaller, session: SessionDep) -> AuditResponse:
    """Every balance against its log; `ok` is false and each mismatch is listed otherwise."""
    report = await service.audit(session)
    return AuditResponse(
        ok=report.ok,
        accounts_checked=report.accounts_checked,
        transactions_checked=report.transactions_checked,
        mismatches=[MismatchOut.model_validate(m, from_attributes=True) for m in report.mismatches],
    )


@internal.post("/grant", response_model=InternalResult)
async def internal_grant(
    body: InternalGrantRequest,
    caller: BillingCaller,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Any:
    async def work() -> InternalResult:
        row = await _move_credits(
            session, idempotency, caller.project_id, body.user_id, service.grant, "grant",
            body.amount, body.transaction_type, body.description, body.reference_id,
        )  # fmt: skip
        return InternalResult(success=True, transaction_id=row.id, balance_after=row.balance_after)

    return await idempotency.run("billing", work)


@internal.post("/spend", response_model=InternalResult)
async def internal_spend(
    body: InternalSpendRequest,
    caller: BillingCaller,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Any:
    async def work() -> InternalResult:
        row = await _move_credits(
            session, idempotency, caller.project_id, body.user_id, service.spend, "spend",
            body.cost, body.transaction_type, body.description,
        )  # fmt: skip
        return InternalResult(success=True, transaction_id=row.id, balance_after=row.balance_after)

    return await idempotency.run("billing", work)


@internal.get("/check", response_model=CheckResponse)
async def internal_check(
    caller: BillingCaller,
    session: SessionDep,
    user_id: Annotated[UserReference, Query()],
    cost: Annotated[int, Query(ge=0, le=MAX_AMOUNT)],
) -> CheckResponse:
    account = await _account_by_reference(session, caller.project_id, user_id)
    sufficient, current = await service.check(session, account.id, cost)
    return CheckResponse(sufficient=sufficient, balance=current)
