"""Which plan an end user is on: the one decision every quota check starts from.

In order (platform-contract §3.5 step 2, "D1 beats a stale JWT"):

1. an active subscription — not built yet; `_subscribed_plan` is the seam billing fills in;
2. the plan stored on the user (`users.plan`), set by the developer through
   `PATCH /api/customers/{id}` or the console. It beats the token: a token minted an hour
   ago still says `free` after the developer upgraded the user, and a user must not be able
   to keep a plan the developer took away by holding on to an old token;
3. the plan the end-user token claims (`plan` or Clerk's `publicMetadata.plan`);
4. `"free"`.

Plans are tier slugs, compared lower-case (the quota looks tiers up the same way).
"""

from __future__ import annotations

from tollhouse.identity.caller import Caller
from tollhouse.identity.models import User

DEFAULT_PLAN = "free"


def _subscribed_plan(user: User) -> str | None:
    """The plan of the user's active subscription. Seam for the billing domain: until
    subscriptions exist, nobody has one."""
    del user
    return None


def plan_of(user: User, claim: str | None = None) -> str:
    """The effective plan of `user`, given the plan their token claims (if any)."""
    plan = _subscribed_plan(user) or user.plan or claim or DEFAULT_PLAN
    return plan.lower()


def effective_plan(caller: Caller) -> str:
    """The effective plan of the caller's end user (see the module docstring)."""
    if caller.user is None:
        return (caller.plan_claim or DEFAULT_PLAN).lower()
    return plan_of(caller.user, caller.plan_claim)
