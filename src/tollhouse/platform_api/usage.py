"""Usage tracking for the caller's end user: `POST /api/data` and `GET /api/usage`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity.caller import Caller
from tollhouse.metering.meter import Meter
from tollhouse.metering.plans import effective_plan
from tollhouse.platform_api import wire

TRACKED_MESSAGE = "Usage tracked."


async def track(
    meter: Meter, session: AsyncSession, caller: Caller, units: int, cache_seconds: float = 0
) -> dict[str, Any]:
    """Count `units` against the end user's effective plan (403 over the limit or for a plan
    the project has no tier for). The plan and the tier's limit may come from this process's
    caches, at most `cache_seconds` (CALLER_CACHE_SECONDS) old; the count is the meter's
    (metering/meter.py: decided without a database round trip, written in batches)."""
    assert caller.user is not None
    plan = await effective_plan(session, caller, cache_seconds)
    standing = await meter.track(session, caller.user, plan, units, cache_seconds)
    return {
        "success": True,
        "data": {"message": TRACKED_MESSAGE},
        "usage": wire.usage(standing, caller.user),
    }


async def report(
    meter: Meter, session: AsyncSession, caller: Caller, cache_seconds: float = 0
) -> dict[str, Any]:
    assert caller.user is not None
    plan = await effective_plan(session, caller, cache_seconds)
    standing = await meter.check(session, caller.user, plan, cache_seconds)
    return wire.usage_report(caller.user, standing)
