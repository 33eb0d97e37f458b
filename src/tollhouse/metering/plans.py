"""Which plan an end user is on: the one decision every quota check starts from.

In order (platform-contract §3.5 step 2, "D1 beats a stale JWT"):

1. an entitled subscription (`active`, `trialing`, `past_due`; billing's `subscriptions`
   table, written by the Stripe webhook from Stripe's current state);
2. the plan stored on the user (`users.plan`), set by the developer through
   `PATCH /api/customers/{id}` or the console. It beats the token: a token minted an hour
   ago still says `free` after the developer upgraded the user, and a user must not be able
   to keep a plan the developer took away by holding on to an old token;
3. the plan the end-user token claims (`plan` or Clerk's `publicMetadata.plan`);
4. `"free"`.

Plans are tier slugs, compared lower-case (the quota looks tiers up the same way).

Step 1 is a query on every metered request; with `cache_seconds` (CALLER_CACHE_SECONDS) its
answer is kept per user for that long (see metering/caches.py: a subscription this process
writes is seen at once, another process's within the window). Steps 2 and 3 come from the
caller, whose user is cached the same way by identity.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.stripe import subscriptions
from tollhouse.identity.caller import Caller
from tollhouse.identity.models import User
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.metering.caches import cleared_on_commit

DEFAULT_PLAN = "free"

# (project, user) → the entitled subscription's plan, "" for none (None reads as a miss).
_subscribed: TTLCache[tuple[str, uuid.UUID], str] = TTLCache()
cleared_on_commit(_subscribed, "subscriptions")


async def _subscribed_plan(
    session: AsyncSession, user: User, cache_seconds: float = 0
) -> str | None:
    """The plan of the user's entitled subscription in their project: `active`, `trialing`
    or `past_due` (Stripe is still retrying the payment). Canceled, unpaid or incomplete
    subscriptions give nothing: the user falls back to the stored plan, the claim, or free —
    and stays in their project."""
    key = (user.project_id, user.id)
    if cache_seconds > 0:
        cached = _subscribed.get(key)
        if cached is not None:
            return cached or None
    plan = await subscriptions.entitled_plan(session, user.project_id, user.id)
    _subscribed.put(key, plan or "", cache_seconds)
    return plan


def plan_of(user: User, claim: str | None = None) -> str:
    """The plan the developer (or the token) gave the user, subscriptions aside: what end-user
    tokens carry as their claim."""
    plan = user.plan or claim or DEFAULT_PLAN
    return plan.lower()


async def effective_plan_of(
    session: AsyncSession, user: User, claim: str | None = None, *, cache_seconds: float = 0
) -> str:
    """The effective plan of `user`, given the plan their token claims (if any); the
    subscription read is cached for `cache_seconds` (0: read now)."""
    subscribed = await _subscribed_plan(session, user, cache_seconds)
    plan = subscribed or user.plan or claim or DEFAULT_PLAN
    return plan.lower()


async def effective_plan(session: AsyncSession, caller: Caller, cache_seconds: float = 0) -> str:
    """The effective plan of the caller's end user (see the module docstring)."""
    if caller.user is None:
        return (caller.plan_claim or DEFAULT_PLAN).lower()
    return await effective_plan_of(
        session, caller.user, caller.plan_claim, cache_seconds=cache_seconds
    )
