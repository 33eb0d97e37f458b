"""Metering's service layer, on SQLite and PostgreSQL: quotas per tier and period, the daily
series, refusals in the one envelope, and the rate limiter's two backends."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select, update

from support import PinnedClock, pinned_metering_caches
from tollhouse.catalog.models import Tier
from tollhouse.db.engine import Database
from tollhouse.identity.models import User
from tollhouse.kit.error_handlers import install_error_handlers
from tollhouse.kit.errors import TollhouseError
from tollhouse.metering import quota
from tollhouse.metering.errors import QuotaExceeded, RateLimited, UnknownPlan
from tollhouse.metering.models import UsageCounter
from tollhouse.metering.periods import current_period
from tollhouse.metering.quota import Usage
from tollhouse.metering.rate_limit import (
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    rate_limiter_from_url,
)
from tollhouse.tenancy.models import Platform, Project

pytestmark = pytest.mark.anyio

REDIS_URL_ENV = "TOLLHOUSE_TEST_REDIS_URL"
T0 = datetime(2025, 1, 10, 15, 30, tzinfo=UTC)
DAY = timedelta(days=1)
# slug → (limit, period, billing_mode)
TIERS = {
    "free": (3, "rolling_30d", "subscription"),
    "monthly": (3, "calendar_month", "subscription"),
    "ten": (10, "rolling_30d", "subscription"),
    "unlimited": (None, "rolling_30d", "subscription"),
    "pack": (5, "rolling_30d", "one_off"),
}


class World(NamedTuple):
    db: Database
    project_id: str
    alice: User
    bob: User


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    # A pool big enough that 100 concurrent transactions wait briefly rather than time out
    # (SQLite keeps its one connection whatever is asked).
    db = Database(database_url, pool_size=20, max_overflow=0, pool_timeout=60)
    async with db.session() as session:
        platform = Platform(name="Acme")
        session.add(platform)
        await session.flush()
        project = Project(platform_id=platform.id, name="acme", mode="test")
        session.add(project)
        await session.flush()
        for slug, (limit, period, mode) in TIERS.items():
            session.add(
                Tier(
                    project_id=project.id,
                    slug=slug,
                    display_name=slug.title(),
                    limit=limit,
                    period=period,
                    billing_mode=mode,
                )
            )
        alice = User(project_id=project.id, external_id="alice")
        bob = User(project_id=project.id, external_id="bob")
        session.add_all([alice, bob])
    try:
        yield World(db, project.id, alice, bob)
    finally:
        await db.dispose()


async def track(
    world: World, plan: str, units: int = 1, now: datetime = T0, user: User | None = None
) -> Usage:
    """One track() in its own unit of work, as a request would run it."""
    async with world.db.session() as session:
        return await quota.track(session, user or world.alice, plan, units, now)


async def check(world: World, plan: str, now: datetime = T0) -> Usage:
    async with world.db.session() as session:
        return await quota.check(session, world.alice, plan, now)


async def stored_count(world: World) -> int | None:
    async with world.db.session() as session:
        return await session.scalar(
            select(UsageCounter.count).where(UsageCounter.user_id == world.alice.id)
        )


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# Periods


def test_rolling_period_starts_at_midnight_of_first_use_and_keeps_its_anchor() -> None:
    first = current_period("rolling_30d", T0)
    assert first == (midnight(T0), midnight(T0) + 30 * DAY)
    assert current_period("rolling_30d", T0 + 29 * DAY, anchor=first.start) == first


def test_rolling_period_after_its_end_starts_today_not_in_a_stale_window() -> None:
    later = T0 + 95 * DAY
    period = current_period("rolling_30d", later, anchor=midnight(T0))
    assert period == (midnight(later), midnight(later) + 30 * DAY)


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (T0, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
        (
            datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2024, 12, 1, tzinfo=UTC),
            datetime(2025, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_calendar_month_is_first_of_month_to_first_of_next(
    now: datetime, start: datetime, end: datetime
) -> None:
    assert current_period("calendar_month", now) == (start, end)


def test_periods_refuse_naive_datetimes_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        current_period("rolling_30d", T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="unknown period"):
        current_period("weekly", T0)


# Quotas


async def test_counts_up_to_the_limit_then_refuses_without_changing_the_count(
    world: World,
) -> None:
    assert [(await track(world, "free")).count for _ in range(3)] == [1, 2, 3]
    with pytest.raises(QuotaExceeded) as refused:
        await track(world, "free")
    assert (refused.value.count, refused.value.limit) == (3, 3)
    assert refused.value.status_code == 403
    assert refused.value.code == "tier_limit_reached"
    assert refused.value.message == "Tier limit reached: 3 of 3 units used this period."
    assert await stored_count(world) == 3
    usage = await check(world, "free")
    assert (usage.count, usage.limit, usage.remaining) == (3, 3, 0)


async def test_unlimited_tier_never_refuses_but_counts(world: World) -> None:
    for _ in range(25):
        usage = await track(world, "unlimited", units=4)
    assert (usage.count, usage.limit, usage.remaining) == (100, None, None)


async def test_plan_names_are_case_insensitive_and_unknown_ones_refused(world: World) -> None:
    assert (await track(world, "FREE")).plan == "free"
    for plan in ("gold", "pack"):  # "pack" exists but is one-off, not a subscription
        with pytest.raises(UnknownPlan) as refused:
            await track(world, plan)
        assert (refused.value.status_code, refused.value.code) == (403, "unknown_plan")
        assert repr(plan) in refused.value.message
    with pytest.raises(UnknownPlan):
        await check(world, "gold")


async def test_units_beyond_what_remains_are_refused_exactly_what_remains_is_accepted(
    world: World,
) -> None:
    with pytest.raises(QuotaExceeded) as refused:
        await track(world, "free", units=4)  # more than the limit, on first use
    assert refused.value.count == 0
    assert (await track(world, "free", units=2)).count == 2
    with pytest.raises(QuotaExceeded):
        await track(world, "free", units=2)
    assert await stored_count(world) == 2
    assert (await track(world, "free", units=1)).count == 3
    with pytest.raises(ValueError, match="at least 1"):
        await track(world, "free", units=0)


async def test_rolling_period_that_ended_yesterday_restarts_today_at_the_new_units(
    world: World,
) -> None:
    first = await track(world, "free", units=3)
    assert (first.period_start, first.period_end) == (midnight(T0), midnight(T0) + 30 * DAY)
    later = first.period_end + DAY + timedelta(hours=5)
    usage = await track(world, "free", now=later)
    assert (usage.count, usage.period_start) == (1, midnight(later))
    assert usage.period_end == midnight(later) + 30 * DAY


async def test_calendar_period_rolls_over_at_the_month_boundary(world: World) -> None:
    await track(world, "monthly", units=3)
    february = datetime(2025, 2, 1, 0, 0, 1, tzinfo=UTC)
    usage = await track(world, "monthly", now=february)
    assert usage.count == 1
    assert (usage.period_start, usage.period_end) == (
        datetime(2025, 2, 1, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
    )


async def test_check_after_the_period_ended_reads_zero_without_writing(world: World) -> None:
    await track(world, "free", units=2)
    later = T0 + 31 * DAY
    usage = await check(world, "free", now=later)
    assert (usage.count, usage.period_start) == (0, midnight(later))
    assert await stored_count(world) == 2  # the reset is left to the next track()
    assert (await check(world, "free")).count == 2


async def test_a_plan_change_starts_a_new_period(world: World) -> None:
    await track(world, "free", units=3)
    upgraded = T0 + 2 * DAY
    usage = await track(world, "ten", now=upgraded)
    assert (usage.count, usage.limit, usage.plan) == (1, 10, "ten")
    assert usage.period_start == midnight(upgraded)
    assert (await check(world, "free", now=upgraded)).count == 0
    # Back to the old plan: again a new period, so its earlier 3 units no longer count.
    assert (await track(world, "free", now=upgraded)).count == 1


async def test_refund_gives_back_units_of_the_current_period_only(world: World) -> None:
    await track(world, "free", units=3)
    async with world.db.session() as session:
        assert await quota.refund(session, world.alice, 2, now=T0) == 1
        assert await quota.refund(session, world.alice, 2, now=T0) is None  # only 1 left
        assert await quota.refund(session, world.alice, 1, now=T0 + 40 * DAY) is None
        assert await quota.refund(session, world.bob, 1, now=T0) is None  # no counter
    assert await stored_count(world) == 1


async def test_daily_series_sums_units_per_utc_day(world: World) -> None:
    day2 = T0 + DAY
    await track(world, "unlimited", units=2)
    await track(world, "unlimited", units=1, now=T0 + timedelta(hours=8))  # still day 1 UTC
    await track(world, "unlimited", units=3, now=day2)
    await track(world, "unlimited", units=5, now=day2, user=world.bob)
    async with world.db.session() as session:
        series = await quota.daily_series(session, world.project_id, T0.date())
        alone = await quota.daily_series(session, world.project_id, T0.date(), world.alice.id)
        recent = await quota.daily_series(session, world.project_id, day2.date())
        other = await quota.daily_series(session, "prj_elsewhere", date(2000, 1, 1))
    assert series == [(T0.date(), 3), (day2.date(), 8)]
    assert alone == [(T0.date(), 3), (day2.date(), 3)]
    assert recent == [(day2.date(), 8)]
    assert other == []


@pytest.mark.parametrize("moment", ["first_use", "after_period_end"])
async def test_concurrent_tracks_never_pass_the_limit(world: World, moment: str) -> None:
    """100 transactions at once against a limit of 10: on PostgreSQL they really race (the
    first use races the insert, the later one races the reset); SQLite serialises them."""
    now = T0
    if moment == "after_period_end":
        await track(world, "ten", units=10)
        now = T0 + 45 * DAY
    results = await asyncio.gather(
        *(track(world, "ten", now=now) for _ in range(100)), return_exceptions=True
    )
    succeeded = [r for r in results if isinstance(r, Usage)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(succeeded) == 10, [r for r in results if not isinstance(r, Usage)][:3]
    assert len(refused) == 90, [r for r in results if isinstance(r, BaseException)][:3]
    assert sorted(u.count for u in succeeded) == list(range(1, 11))
    assert {r.count for r in refused} == {10}
    assert await stored_count(world) == 10
    async with world.db.session() as session:
        series = await quota.daily_series(session, world.project_id, now.date())
    assert series[-1] == (now.date(), 10)


# Refusals in the one envelope


async def test_refusals_carry_the_sdk_fields_at_the_top_level() -> None:
    app = FastAPI()
    install_error_handlers(app)
    refusals: dict[str, TollhouseError] = {
        "quota": QuotaExceeded(3, 3),
        "rate": RateLimited(17),
        "plan": UnknownPlan("gold"),
    }

    @app.get("/{name}")
    async def refuse(name: str) -> None:
        raise refusals[name]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        quota_body = (await client.get("/quota")).json()
        rate = await client.get("/rate")
        plan = await client.get("/plan")
    assert quota_body["error"] == "tier_limit_reached"
    assert (quota_body["usageCount"], quota_body["limit"]) == (3, 3)
    assert rate.status_code == 429
    assert rate.headers["retry-after"] == "17"
    assert (rate.json()["error"], rate.json()["retryAfter"]) == ("rate_limited", 17)
    assert plan.status_code == 403
    assert set(plan.json()) == {"error", "message", "detail", "request_id"}


# Rate limits

LimiterFactory = Callable[..., Awaitable[RateLimiter]]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[LimiterFactory]:
    """Builds limiters of one backend; Redis ones share a random prefix, removed afterwards."""
    redis_url = os.environ.get(REDIS_URL_ENV)
    if request.param == "redis" and not redis_url:
        pytest.skip(f"Redis rate-limit backend skipped: {REDIS_URL_ENV} is not set")
    prefix = f"tollhouse-test:{uuid.uuid4().hex}:"
    built: list[RateLimiter] = []

    async def factory(clock: Callable[[], float] = time.time) -> RateLimiter:
        limiter: RateLimiter
        if request.param == "memory":
            limiter = MemoryRateLimiter(clock=clock)
        else:
            limiter = RedisRateLimiter.from_url(str(redis_url), prefix, clock=clock)
        built.append(limiter)
        return limiter

    yield factory
    for limiter in built:
        await limiter.close()
    if redis_url:
        async with Redis.from_url(redis_url) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)


def frozen_now() -> Callable[[], float]:
    """Real time, stopped: no window edge can fall inside the test."""
    moment = time.time()
    return lambda: moment


async def test_allows_the_limit_then_refuses_with_retry_after(
    make_limiter: LimiterFactory,
) -> None:
    limiter = await make_limiter(frozen_now())
    decisions = [await limiter.hit("user-1", 100) for _ in range(101)]
    assert all(d.allowed and d.retry_after == 0 for d in decisions[:100])
    assert [d.remaining for d in decisions[:3]] == [99, 98, 97]
    refused = decisions[100]
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 1 <= refused.retry_after <= 60
    assert (await limiter.hit("user-2", 100)).allowed  # keys are counted apart


async def test_windows_expire(make_limiter: LimiterFactory) -> None:
    clock = PinnedClock()
    limiter = await make_limiter(clock)
    for _ in range(3):
        last = await limiter.hit("user-1", 2, window_seconds=1)
    assert not last.allowed
    assert last.retry_after == 1
    clock.now += last.retry_after
    assert (await limiter.hit("user-1", 2, window_seconds=1)).allowed


async def test_concurrent_hits_never_pass_the_limit(make_limiter: LimiterFactory) -> None:
    limiter = await make_limiter(frozen_now())
    decisions = await asyncio.gather(*(limiter.hit("user-1", 50) for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 50


async def test_memory_limiter_drops_expired_windows_and_stays_bounded() -> None:
    clock = [1_000.0]
    limiter = MemoryRateLimiter(max_keys=100, clock=lambda: clock[0])
    for n in range(1_000):
        await limiter.hit(f"user-{n}", 10)
    assert len(limiter) == 100
    clock[0] += 120
    await limiter.hit("late", 10)
    assert len(limiter) == 1


async def test_redis_windows_are_keys_that_expire() -> None:
    redis_url = os.environ.get(REDIS_URL_ENV)
    if not redis_url:
        pytest.skip(f"Redis rate-limit backend skipped: {REDIS_URL_ENV} is not set")
    prefix = f"tollhouse-test:{uuid.uuid4().hex}:"
    limiter = rate_limiter_from_url(redis_url, prefix)
    assert isinstance(limiter, RedisRateLimiter)
    try:
        await limiter.hit("user-1", 5, window_seconds=60)
        async with Redis.from_url(redis_url) as client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            assert len(keys) == 1
            assert 1 <= await client.ttl(keys[0]) <= 61
            await client.delete(*keys)
    finally:
        await limiter.close()


async def test_without_a_redis_url_the_limiter_is_in_memory() -> None:
    limiter = rate_limiter_from_url(None, "unused:")
    assert isinstance(limiter, MemoryRateLimiter)
    await limiter.close()


# The tier's limit, cached per process for CALLER_CACHE_SECONDS


async def test_a_tier_limit_change_is_seen_within_the_cache_window(world: World) -> None:
    """0 reads the tier every time; a window serves another process's change at most that
    late; a change this process commits is seen at once."""
    clock = PinnedClock()
    with pinned_metering_caches(clock):
        await _tier_limit_changes(world, clock)


async def _tier_limit_changes(world: World, clock: PinnedClock) -> None:

    async def tracked(cache_seconds: float) -> Usage:
        async with world.db.session() as session:
            return await quota.track(
                session, world.alice, "free", 1, T0, cache_seconds=cache_seconds
            )

    async def set_limit_elsewhere(limit: int) -> None:
        # As another process would: straight through the engine, no session of this process.
        async with world.db.engine.begin() as connection:
            await connection.execute(
                update(Tier)
                .where(Tier.project_id == world.project_id, Tier.slug == "free")
                .values(limit=limit)
            )

    assert (await tracked(0)).limit == 3
    await set_limit_elsewhere(4)
    assert ((await tracked(0)).count, (await tracked(0.3)).limit) == (2, 4)
    assert (await tracked(0.3)).count == 4
    await set_limit_elsewhere(10)
    with pytest.raises(QuotaExceeded) as refused:
        await tracked(0.3)  # the cached limit, for at most the window
    assert (refused.value.count, refused.value.limit) == (4, 4)
    clock.now += 0.35
    assert ((usage := await tracked(0.3)).count, usage.limit) == (5, 10)
    async with world.db.session() as session:  # this process's own change
        await session.execute(
            update(Tier)
            .where(Tier.project_id == world.project_id, Tier.slug == "free")
            .values(limit=5)
        )
    with pytest.raises(QuotaExceeded) as refused:
        await tracked(0.3)
    assert (refused.value.count, refused.value.limit) == (5, 5)
