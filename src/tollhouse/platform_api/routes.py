"""Platform API routes (platform-contract §1.2), under `/api/…` beside the Gateway's
`/api/v1/…`: no route here starts with `/api/v1`, and none has a path parameter right after
`/api/`, so neither API can shadow the other. Handlers are thin; rules live in the modules
named after each area.

Who may call what:
- `PlatformCaller` (publishable or secret key): the catalog.
- `RateLimitedEndUser` (either key + an end-user token; project rate limit): usage.
- `SecretKeyCaller` (a publishable key is refused with 403 before it is even looked up):
  customers, their tokens and credits, the dashboard.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.catalog import service as catalog
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import PlatformCaller, SecretKeyCaller, identity_context
from tollhouse.identity.models import EXTERNAL_ID_MAX, User
from tollhouse.kit.idempotency import IdempotencyDep
from tollhouse.kit.paging import Limit, Offset
from tollhouse.metering.guards import RateLimitedEndUser
from tollhouse.metering.meter import meter_of
from tollhouse.metering.plans import effective_plan_of
from tollhouse.platform_api import credits, customers, dashboard, usage, wire
from tollhouse.platform_api.schemas import (
    CreditMove,
    CustomerCreate,
    CustomerUpdate,
    DataRequest,
)

router = APIRouter(tags=["platform"])

CustomerId = Annotated[str, Path(min_length=1, max_length=EXTERNAL_ID_MAX)]


# --- catalog ------------------------------------------------------------------------------


@router.get("/api/tiers")
async def list_tiers(caller: PlatformCaller, session: SessionDep) -> dict[str, Any]:
    """Every tier and product of the key's project (and so of its mode only)."""
    tiers = await catalog.tiers_of_project(session, caller.project_id)
    return {"tiers": [wire.tier(tier) for tier in tiers]}


@router.get("/api/products")
async def list_products(caller: PlatformCaller, session: SessionDep) -> dict[str, Any]:
    """The project's one-off products; `soldOut` when stock is counted and gone."""
    tiers = await catalog.tiers_of_project(session, caller.project_id)
    return {"products": [wire.product(t) for t in tiers if t.billing_mode == "one_off"]}


# --- usage --------------------------------------------------------------------------------


@router.post("/api/data")
async def track_usage(
    caller: RateLimitedEndUser,
    request: Request,
    session: SessionDep,
    idempotency: IdempotencyDep,
    body: DataRequest | None = None,
) -> Any:
    """Count `units` (default 1) for the end user; 403 `tier_limit_reached` over the limit.
    With an `Idempotency-Key`, a retry replays the first answer and counts nothing."""
    assert caller.user is not None
    units = body.units if body is not None else 1
    cache_seconds = identity_context(request).settings.caller_cache_seconds
    return await idempotency.run(
        f"data:{caller.user.id}",
        lambda: usage.track(meter_of(request), session, caller, units, cache_seconds),
    )


@router.get("/api/usage")
async def get_usage(
    caller: RateLimitedEndUser, request: Request, session: SessionDep
) -> dict[str, Any]:
    cache_seconds = identity_context(request).settings.caller_cache_seconds
    return await usage.report(meter_of(request), session, caller, cache_seconds)


# --- customers ----------------------------------------------------------------------------


async def _customer_body(session: AsyncSession, user: User) -> dict[str, Any]:
    key = await customers.publishable_key(session, user.project_id)
    return wire.customer(user, await effective_plan_of(session, user), key)


@router.post("/api/customers", status_code=201)
async def create_customer(
    body: CustomerCreate, caller: SecretKeyCaller, session: SessionDep
) -> dict[str, Any]:
    user = await customers.create(session, caller.project_id, body)
    return {"success": True, "customer": await _customer_body(session, user)}


@router.get("/api/customers/{customer_id}")
async def get_customer(
    customer_id: CustomerId, caller: SecretKeyCaller, session: SessionDep
) -> dict[str, Any]:
    user = await customers.find(session, caller.project_id, customer_id)
    return {"customer": await _customer_body(session, user)}


@router.patch("/api/customers/{customer_id}")
async def update_customer(
    customer_id: CustomerId,
    body: CustomerUpdate,
    caller: SecretKeyCaller,
    request: Request,
    session: SessionDep,
) -> dict[str, Any]:
    """Set the customer's plan; it beats whatever plan their tokens claim."""
    user = await customers.find(session, caller.project_id, customer_id)
    await customers.set_plan(session, user, body.plan)
    identity_context(request).forget_user(session, user.id)
    return {"success": True, "customer": await _customer_body(session, user)}


@router.delete("/api/customers/{customer_id}")
async def delete_customer(
    customer_id: CustomerId, caller: SecretKeyCaller, request: Request, session: SessionDep
) -> dict[str, Any]:
    """Deactivate the customer and erase their personal data; credit history stays."""
    user = await customers.find(session, caller.project_id, customer_id)
    identity = identity_context(request)
    deleted = await customers.delete(session, user, identity.pepper)
    identity.forget_user(session, user.id)
    return {
        "success": True,
        "message": "Customer deleted.",
        "deleted": {"id": deleted.id, "email": deleted.email},
    }


@router.post("/api/customers/{customer_id}/token")
async def customer_token(
    customer_id: CustomerId, caller: SecretKeyCaller, request: Request, session: SessionDep
) -> dict[str, Any]:
    """A token the customer's browser or app sends as `X-Clerk-Token` with the
    publishable key (END_USER_TOKEN_MINUTES)."""
    context = identity_context(request)
    user = await customers.find(session, caller.project_id, customer_id)
    minted = await customers.mint_token(
        session, context.end_user_signer, user, context.settings.end_user_token_minutes * 60
    )
    return {
        "token": minted.token,
        "expiresAt": wire.iso(datetime.fromtimestamp(minted.expires_at, UTC)),
        "tokenType": "Bearer",
    }


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> dict[str, Any]:
    """The public keys our end-user tokens are signed with."""
    return identity_context(request).end_user_signer.jwks()


# --- customers' credits -------------------------------------------------------------------


@router.get("/api/customers/{customer_id}/credits")
async def customer_credits(
    customer_id: CustomerId, caller: SecretKeyCaller, session: SessionDep
) -> dict[str, Any]:
    user = await customers.find(session, caller.project_id, customer_id)
    return await credits.balance(session, user)


@router.post("/api/customers/{customer_id}/credits/{operation}")
async def move_credits(
    customer_id: CustomerId,
    operation: credits.Operation,
    body: CreditMove,
    caller: SecretKeyCaller,
    session: SessionDep,
    idempotency: IdempotencyDep,
) -> Any:
    """`…/credits/grant` and `…/credits/spend`."""

    async def work() -> dict[str, Any]:
        user = await customers.find(session, caller.project_id, customer_id)
        return await credits.move(session, user, operation, body, idempotency)

    return await idempotency.run(f"customer:{caller.project_id}", work)


@router.get("/api/customers/{customer_id}/credits/history")
async def credit_history(
    customer_id: CustomerId,
    caller: SecretKeyCaller,
    session: SessionDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    user = await customers.find(session, caller.project_id, customer_id)
    return await credits.history(session, user, limit, offset)


# --- dashboard ----------------------------------------------------------------------------


@router.get("/api/dashboard")
async def get_dashboard(
    caller: SecretKeyCaller, request: Request, session: SessionDep
) -> dict[str, Any]:
    # This process's counts reach the database first (other replicas' within a flush window).
    await meter_of(request).flush()
    return await dashboard.dashboard(session, caller)


@router.get("/api/dashboard/totals")
async def get_totals(caller: SecretKeyCaller, session: SessionDep) -> dict[str, Any]:
    return await dashboard.totals(session, caller)
