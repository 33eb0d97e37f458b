"""Usage quotas: one counter per end user, counted against their plan's tier limit.

A quota is money-like, so it is never read-then-written. The hot path is one statement:

    UPDATE usage_counters SET count = count + :units
     WHERE user_id = :user AND plan = :plan AND period_end > :now
       AND count + :units <= :limit                      -- left out for unlimited tiers
    RETURNING count, period_start, period_end

When it matches nothing, further *conditional* statements find out why, in this order:
the period ended or the plan changed (reset to `:units` in a new period), no counter yet
(insert-first with count 0, then count again), else over the limit (refuse, change nothing).
Changing a user's plan starts a new period with a fresh count: the new tier's limit applies
to what is used under it. Functions flush (execute), never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.catalog.models import Tier
from tollhouse.db.dialect import insert_ignoring_conflicts, upsert
from tollhouse.db.types import UTCDateTime
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.kit.ttl_cache import TTLCache
from tollhouse.metering.caches import cleared_on_commit
from tollhouse.metering.errors import QuotaExceeded, UnknownPlan
from tollhouse.metering.models import UsageCounter, UsageDaily
from tollhouse.metering.periods import Period, current_period


@dataclass(frozen=True, slots=True)
class Usage:
    """A user's standing in the current period; `limit` None means unlimited."""

    count: int
    limit: int | None
    plan: str
    period_start: datetime
    period_end: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.count, 0)


# Built once: track() runs on every metered request (see ledger/service.py for the numbers).
# Bind names avoid column names, which insert()/update() reserve for their own parameters.
_counters = cast(Table, UsageCounter.__table__)
_daily = cast(Table, UsageDaily.__table__)
_now = bindparam("now", type_=UTCDateTime())
_units: Any = bindparam("units")
_RETURNED = (_counters.c.count, _counters.c.period_start, _counters.c.period_end)

_tiers = cast(Table, Tier.__table__)
_TIER = select(_tiers.c.slug, _tiers.c.limit, _tiers.c.period).where(
    _tiers.c.project_id == bindparam("project"),
    _tiers.c.slug == bindparam("slug"),
    _tiers.c.billing_mode == "subscription",
)


@dataclass(frozen=True, slots=True)
class PlanLimit:
    """What a quota needs of a tier: its slug, limit (None = unlimited) and period kind."""

    slug: str
    limit: int | None
    period: str


def _increment(limited: bool) -> Any:
    within_limit = [_counters.c.count + _units <= bindparam("cap")] if limited else []
    return (
        update(_counters)
        .where(
            _counters.c.user_id == bindparam("user"),
            _counters.c.plan == bindparam("slug"),
            _counters.c.period_end > _now,
            *within_limit,
        )
        .values(count=_counters.c.count + _units, updated_at=_now)
        .returning(*_RETURNED)
    )


_INCREMENT = {True: _increment(limited=True), False: _increment(limited=False)}
# Whether `:units` fits the limit is checked in Python before this runs (it is a constant).
_RESET = (
    update(_counters)
    .where(
        _counters.c.user_id == bindparam("user"),
        or_(_counters.c.period_end <= _now, _counters.c.plan != bindparam("slug")),
    )
    .values(
        count=_units,
        plan=bindparam("slug"),
        period_start=bindparam("start", type_=UTCDateTime()),
        period_end=bindparam("end", type_=UTCDateTime()),
        updated_at=_now,
    )
    .returning(*_RETURNED)
)
_REFUND = (
    update(_counters)
    .where(
        _counters.c.user_id == bindparam("user"),
        _counters.c.period_end > _now,
        _counters.c.count >= _units,
    )
    .values(count=_counters.c.count - _units, updated_at=_now)
    .returning(_counters.c.count)
)
_READ = select(_counters.c.plan, *_RETURNED).where(_counters.c.user_id == bindparam("user"))
# Per dialect (the ON CONFLICT spelling differs); filled on first use.
_DAILY_UPSERTS: dict[str, Any] = {}


# (project, slug) → its tier, for CALLER_CACHE_SECONDS; emptied when this process commits a
# change to a tier (metering/caches.py). Unknown plans are not kept.
_limits: TTLCache[tuple[str, str], PlanLimit] = TTLCache()
cleared_on_commit(_limits, "tiers")


def cached_limit(project_id: str, plan: str) -> PlanLimit | None:
    """The tier `limit_for` would answer from this process's memory, without a session."""
    return _limits.get((project_id, plan.lower()))


async def limit_for(
    session: AsyncSession, project_id: str, plan: str, cache_seconds: float = 0
) -> PlanLimit:
    """The project's subscription tier named by `plan` (case-insensitive), or UnknownPlan.
    With `cache_seconds`, an answer that old at most may come from this process's memory."""
    key = (project_id, plan.lower())
    if cache_seconds > 0:
        cached = _limits.get(key)
        if cached is not None:
            return cached
    row = (await session.execute(_TIER, {"project": project_id, "slug": key[1]})).first()
    if row is None:
        raise UnknownPlan(plan)
    slug, limit, period = row
    found = PlanLimit(slug, limit, period)
    _limits.put(key, found, cache_seconds)
    return found


async def track(
    session: AsyncSession,
    user: User,
    plan: str,
    units: int = 1,
    now: datetime | None = None,
    *,
    cache_seconds: float = 0,
) -> Usage:
    """Count `units` against the user's plan in the current period, or raise QuotaExceeded.

    Safe under any concurrency: every write is conditional, so N parallel calls against a
    limit of L succeed exactly min(N, L) times. Unlimited tiers never refuse but still count.
    The tier's limit may come from a cache at most `cache_seconds` old (a limit the developer
    changes applies within CALLER_CACHE_SECONDS); the counting statement stays one atomic
    conditional UPDATE with that limit as a constant.
    """
    if units < 1:
        raise ValueError("units must be at least 1")
    now = now or utcnow()
    tier = await limit_for(session, user.project_id, plan, cache_seconds)
    count, start, end = await reserve(session, user, tier, units, now)
    await add_to_daily(session, [daily_row(user, units, now)])
    return Usage(count, tier.limit, tier.slug, start, end)


async def reserve(
    session: AsyncSession, user: User, tier: PlanLimit, units: int, now: datetime
) -> tuple[int, datetime, datetime]:
    """Count `units` in the durable counter without the daily series: the conditional
    statements of the module docstring; (count, start, end) as they now stand. The meter
    (metering/meter.py) reserves its leases with it."""
    params: dict[str, Any] = {
        "user": user.id,
        "slug": tier.slug,
        "units": units,
        "cap": tier.limit,
        "now": now,
    }
    increment = _INCREMENT[tier.limit is not None]
    row = await _returning(session, increment, params)
    if row is None and (tier.limit is None or units <= tier.limit):
        start, end = current_period(tier.period, now)
        row = await _returning(session, _RESET, {**params, "start": start, "end": end})
    if row is None:
        await _insert_counter(session, user, tier, now)
        # Also catches a concurrent first use or reset that committed after our first try.
        row = await _returning(session, increment, params)
    if row is None:
        assert tier.limit is not None, "an unlimited tier never refuses"
        usage = await _read(session, user, tier, now)
        raise QuotaExceeded(usage.count, tier.limit)
    count, start, end = row
    return int(count), start, end


async def _returning(
    session: AsyncSession, statement: Any, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    row = (await session.execute(statement, params)).one_or_none()
    return None if row is None else tuple(row)


async def _insert_counter(
    session: AsyncSession, user: User, tier: PlanLimit, now: datetime
) -> None:
    """Insert-first: a concurrent first use makes one counter, and neither call fails."""
    start, end = current_period(tier.period, now)
    await session.execute(
        insert_ignoring_conflicts(session, UsageCounter).values(
            user_id=user.id,
            project_id=user.project_id,
            count=0,
            plan=tier.slug,
            period_start=start,
            period_end=end,
            updated_at=now,
        )
    )


async def open_period(
    session: AsyncSession, user: User, tier: PlanLimit, now: datetime
) -> tuple[int, datetime, datetime]:
    """The durable counter as it stands for `tier` at `now`, (count, start, end), started
    (insert-first or reset) the way track() would start it, but counting nothing."""
    try:
        return await reserve(session, user, tier, 0, now)
    except QuotaExceeded:  # already over a limit that was lowered: report it as it is
        usage = await _read(session, user, tier, now)
        return usage.count, usage.period_start, usage.period_end


# Unit deltas counted elsewhere (the meter), applied to the period they were counted in: a
# counter that has moved on to a new period or plan since is left alone, and a counter is
# never taken below zero.
_APPLY = (
    update(_counters)
    .where(
        _counters.c.user_id == bindparam("user"),
        _counters.c.plan == bindparam("slug"),
        _counters.c.period_start == bindparam("start", type_=UTCDateTime()),
        _counters.c.count + _units >= 0,
    )
    .values(count=_counters.c.count + _units, updated_at=_now)
)


async def apply_counts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add each row's `units` (negative gives back) to the counter of `user`, `slug` and
    `start`, dated `now`: one statement for every row (executemany)."""
    if rows:
        await session.execute(_APPLY, rows)


def daily_row(user: User, units: int, now: datetime) -> dict[str, Any]:
    """One `add_to_daily` row: `units` on `now`'s UTC day."""
    return {
        "user_id": user.id,
        "project_id": user.project_id,
        "day": now.astimezone(UTC).date(),
        "units": units,
        "added": units,
    }


async def add_to_daily(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add units to the daily series, one statement for every row (`daily_row`)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement = _DAILY_UPSERTS.get(dialect)
    if statement is None:
        statement = upsert(
            session, UsageDaily, ["user_id", "day"], {"units": _daily.c.units + bindparam("added")}
        )
        _DAILY_UPSERTS[dialect] = statement
    await session.execute(statement, rows)


async def check(
    session: AsyncSession,
    user: User,
    plan: str,
    now: datetime | None = None,
    *,
    cache_seconds: float = 0,
) -> Usage:
    """The user's usage, read-only. A period that has ended (or a changed plan) reads as 0 in
    the new period; this is computed, not written: the next track() writes the reset."""
    now = now or utcnow()
    tier = await limit_for(session, user.project_id, plan, cache_seconds)
    return await _read(session, user, tier, now)


async def _read(session: AsyncSession, user: User, tier: PlanLimit, now: datetime) -> Usage:
    row = await _returning(session, _READ, {"user": user.id})
    if row is not None:
        plan, count, start, end = row
        if plan == tier.slug and end > now:
            return Usage(int(count), tier.limit, tier.slug, start, end)
    period: Period = current_period(tier.period, now)
    return Usage(0, tier.limit, tier.slug, period.start, period.end)


async def refund(
    session: AsyncSession, user: User, units: int, now: datetime | None = None
) -> int | None:
    """Give back `units` of the current period (work that failed upstream); the new count,
    or None when there is nothing to give back (no counter, fewer units, period over).
    The daily series keeps them: it records what was attempted."""
    if units < 1:
        raise ValueError("units must be at least 1")
    params = {"user": user.id, "units": units, "now": now or utcnow()}
    count = (await session.execute(_REFUND, params)).scalar()
    return None if count is None else int(count)


async def daily_series(
    session: AsyncSession,
    project_id: str,
    since: date,
    user_id: uuid.UUID | None = None,
    unflushed: Callable[[], Mapping[date, int]] | None = None,
) -> list[tuple[date, int]]:
    """Units per UTC day from `since` on, oldest first; days without usage are absent.
    `unflushed` (the meter's `unflushed_days`, bound) adds what is counted but not written
    yet; it is called after the database has answered (see there why)."""
    query = (
        select(_daily.c.day, func.sum(_daily.c.units))
        .where(_daily.c.project_id == project_id, _daily.c.day >= since)
        .group_by(_daily.c.day)
        .order_by(_daily.c.day)
    )
    if user_id is not None:
        query = query.where(_daily.c.user_id == user_id)
    units = {day: int(total) for day, total in await session.execute(query)}
    for day, pending in (unflushed() if unflushed else {}).items():
        units[day] = units.get(day, 0) + pending
    return sorted(units.items())
