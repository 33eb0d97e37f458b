"""A project's customers (its end users, `User` rows) as the Platform API manages them.

A customer's public id is the user's external id: the token's `sub` for users who arrived
with a token, `cus_…` for users created here. Every lookup is scoped by the caller's project,
so another project's customer is a 404 like one that never existed. Functions flush, never
commit.

Plans: a customer's plan must be one of the project's subscription tiers. One exception,
so a project can start with no catalog at all: `"free"` is accepted while the project has no
subscription tiers (metering then answers `403 unknown_plan` on usage until a `free` tier
exists).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.catalog import service as catalog
from tollhouse.identity import accounts, privacy
from tollhouse.identity import service as identity
from tollhouse.identity.end_user_tokens import EndUserSigner
from tollhouse.identity.errors import UserNotFound
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.kit.ids import new_id
from tollhouse.metering.plans import DEFAULT_PLAN, effective_plan_of
from tollhouse.platform_api.errors import (
    CustomerExists,
    CustomerNotFound,
    NoPublishableKey,
    PasswordsNotSupported,
    PlanNotOffered,
)
from tollhouse.platform_api.schemas import CustomerCreate
from tollhouse.tenancy import service as tenancy

CUSTOMER_ID_PREFIX = accounts.CUSTOMER_ID_PREFIX


async def find(session: AsyncSession, project_id: str, reference: str) -> User:
    """An active customer of the project by external id or by our uuid, else 404."""
    try:
        return await identity.find_user(session, project_id, reference)
    except UserNotFound as exc:
        raise CustomerNotFound() from exc


async def checked_plan(session: AsyncSession, project_id: str, plan: str) -> str:
    """`plan` lower-cased, if the project offers it (see the module docstring)."""
    plan = plan.lower()
    offered = await catalog.subscription_tier_slugs(session, project_id)
    if plan in offered or (not offered and plan == DEFAULT_PLAN):
        return plan
    raise PlanNotOffered(plan)


async def _lock_email(session: AsyncSession, project_id: str, email: str) -> None:
    """Serialise creations of one email in one project (no unique index covers it).

    PostgreSQL: a transaction-scoped advisory lock on a hash of (project, email). SQLite:
    every transaction already takes the write lock at BEGIN, so creations queue anyway.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"customer:{project_id}:{email}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})


async def create(session: AsyncSession, project_id: str, body: CustomerCreate) -> User:
    if body.password is not None:
        raise PasswordsNotSupported()
    email = body.email.lower()
    plan = await checked_plan(session, project_id, body.plan)
    await _lock_email(session, project_id, email)
    taken = await session.scalar(
        select(User.id).where(
            User.project_id == project_id,
            func.lower(User.email) == email,
            User.is_active.is_(True),
        )
    )
    if taken is not None:
        raise CustomerExists()
    user, _ = await identity.resolve_user(
        session, project_id, new_id(CUSTOMER_ID_PREFIX), email=email
    )
    user.first_name = body.first_name
    user.last_name = body.last_name
    user.plan = plan
    await session.flush()
    return user


async def set_plan(session: AsyncSession, user: User, plan: str) -> None:
    user.plan = await checked_plan(session, user.project_id, plan)
    await session.flush()


@dataclass(frozen=True, slots=True)
class Deleted:
    id: str | None
    email: str | None


async def delete(session: AsyncSession, user: User, pepper: str) -> Deleted:
    """Deactivate and erase personal data as a GDPR erasure does; money rows stay."""
    gone = Deleted(user.external_id, user.email)
    await privacy.erase_user(session, user, pepper)
    return gone


async def publishable_key(session: AsyncSession, project_id: str) -> str | None:
    """The project's current publishable key: the newest active one without an end date
    (a key in its roll grace is on its way out), else the newest active one."""
    now = utcnow()
    active = [
        key
        for key in await tenancy.keys_of_project(session, project_id)
        if key.kind == "publishable"
        and key.revoked_at is None
        and (key.expires_at is None or key.expires_at > now)
    ]
    active.sort(key=lambda key: (key.expires_at is None, key.created_at))
    return active[-1].display if active else None


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    expires_at: int


async def mint_token(
    session: AsyncSession, signer: EndUserSigner, user: User, ttl_seconds: int
) -> MintedToken:
    """An end-user token for `user`, bound to the project and its publishable key; its `plan`
    is the effective one now (what the SDK's `auth.getUser().plan` shows)."""
    key = await publishable_key(session, user.project_id)
    if key is None:
        raise NoPublishableKey()
    assert user.external_id is not None, "active users have an external id"
    token, expires_at = signer.mint(
        project_id=user.project_id,
        subject=user.external_id,
        plan=await effective_plan_of(session, user),
        publishable_key=key,
        email=user.email,
        ttl_seconds=ttl_seconds,
    )
    return MintedToken(token, expires_at)
