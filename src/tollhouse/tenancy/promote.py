"""Promote a test project to live: a copy, not a move — the test project stays as it was.

The catalog lives above tenancy, so the caller passes the function that copies tiers
(`catalog.service.copy_tiers`); tenancy never imports upwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.kit.errors import BadRequest, TollhouseError
from tollhouse.tenancy.models import Project
from tollhouse.tenancy.service import NewProject, create_project_with_keys, project_of_platform

# (session, source project id, target project) → number of catalog items copied
CopyCatalog = Callable[[AsyncSession, str, Project], Awaitable[int]]

# Everything a developer configured on the project, besides its name.
CARRIED_SETTINGS = (
    "type",
    "enable_tax",
    "rate_limit_per_minute",
    "end_user_issuer",
    "end_user_jwks_url",
    "end_user_audience",
)


class NotATestProject(BadRequest):
    code = "not_a_test_project"
    message = "Only a test project can be promoted to live."


@dataclass(frozen=True, slots=True)
class Promotion:
    live: NewProject
    tiers_copied: int


# (session, platform id) → can the platform take live payments? Billing's answer (Stripe
# Connect lives above tenancy, so the caller passes it in, like CopyCatalog).
LivePaymentsCheck = Callable[[AsyncSession, str], Awaitable[bool]]


class NeedsLiveOAuth(TollhouseError):
    status_code = 428
    code = "needs_live_oauth"
    message = "Connect a live Stripe account first, then promote again."

    def __init__(self) -> None:
        super().__init__(extra={"needsLiveOAuth": True})


async def require_live_payments_ready(
    session: AsyncSession, platform_id: str, check: LivePaymentsCheck | None = None
) -> None:
    """428 `needs_live_oauth` (`needsLiveOAuth: true`) when billing says the platform cannot
    take live payments: live Stripe is configured and the platform has no live connection.
    With Stripe unconfigured entirely (or no check passed) promotion is allowed: the live
    project simply cannot sell until Stripe is set up."""
    if check is not None and not await check(session, platform_id):
        raise NeedsLiveOAuth()


async def promote(
    session: AsyncSession,
    pepper: str,
    platform_id: str,
    project_id: str,
    *,
    copy_catalog: CopyCatalog,
    live_payments_ready: LivePaymentsCheck | None = None,
) -> Promotion:
    """The live twin of a test project, with its catalog and fresh live keys.

    409 `project_name_taken` when a live project of that name exists (so a second promote
    fails); 400 `not_a_test_project` for a live one; another platform's id is a 404.
    """
    test = await project_of_platform(session, platform_id, project_id)
    if test.mode != "test":
        raise NotATestProject()
    await require_live_payments_ready(session, platform_id, live_payments_ready)
    live = await create_project_with_keys(
        session,
        pepper,
        platform_id,
        name=test.name,
        mode="live",
        promoted_from_id=test.id,
        **{name: getattr(test, name) for name in CARRIED_SETTINGS},
    )
    copied = await copy_catalog(session, test.id, live.project)
    return Promotion(live, copied)
