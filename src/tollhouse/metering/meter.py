"""Quota counting off the request's critical path: limits still exact, the durable record
(`usage_counters`, `usage_daily`) written in batches.

`quota.track` costs a request four round trips (BEGIN, the counter UPDATE, the daily upsert,
COMMIT). A `Meter` decides in this process's memory, or with one Redis script, and a flush
every METERING_FLUSH_SECONDS writes what was counted: one statement per table (executemany),
whatever the number of users. The live count has one of two homes, behind one interface:

- **This process** (no REDIS_URL). A limited tier's units are *leased*: before they are
  served from memory, the durable counter is raised by a block with quota's conditional
  UPDATE (`count + block <= limit`, one round trip per METERING_LEASE_UNITS units), so the
  database always holds at least what was used. Each flush gives back what the lease did not
  use. A crash leaves the unused rest counted — after a restart a user may be refused up to
  one lease early, never served past the limit — and other processes on the same database
  (`--workers 2` without Redis) lease from the same counter, so together they can refuse
  early (by what another holds until its next flush), never let anyone past. One process
  alone is exact: a request that finds the counter full while another request's lease is
  still uncommitted waits for it and uses its spare units. Unlimited tiers
  need no lease: their units are written behind, and a crash loses at most one flush window
  of those counts.
- **Redis** (REDIS_URL). One Lua script checks the cap and increments atomically, so every
  replica shares one exact count. A user's key is seeded from the durable counter on first
  use and whenever a period or plan starts (the durable counter is started first, so flushes
  land in the right period), and it lives until the period ends: a restarted process goes on
  from Redis's count. The database receives every process's units in its batches.

Money never goes through here: the credit ledger stays synchronous.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, cast

from fastapi import Request
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from tollhouse.db.engine import Database
from tollhouse.identity.models import User
from tollhouse.kit.clock import utcnow
from tollhouse.metering import quota
from tollhouse.metering.errors import QuotaExceeded
from tollhouse.metering.quota import PlanLimit, Usage

Clock = Callable[[], datetime]
DEFAULT_PREFIX = "tollhouse:meter:"
DEFAULT_LEASE_UNITS = 20


@dataclass(slots=True)
class Standing:
    """What this process knows of a user's current period."""

    slug: str
    limit: int | None
    period_start: datetime
    period_end: datetime
    used: int
    # Memory store, limited tiers: units reserved in the durable counter and not used yet.
    held: int = 0

    def serves(self, tier: PlanLimit, now: datetime) -> bool:
        return self.slug == tier.slug and self.limit == tier.limit and now < self.period_end

    def serves_period(self, other: Standing) -> bool:
        return self.slug == other.slug and self.period_start == other.period_start

    def usage(self) -> Usage:
        return Usage(self.used, self.limit, self.slug, self.period_start, self.period_end)


# (user, tier slug, period start): the counter a delta belongs to.
CounterKey = tuple[uuid.UUID, str, datetime]
# (user, project, UTC day)
DayKey = tuple[uuid.UUID, str, date]


class Store(Protocol):
    """Where the live count is decided. `count` raises QuotaExceeded, or says how many units
    the durable counter still lacks (the meter flushes them)."""

    async def count(
        self, meter: Meter, session: AsyncSession, user: User, tier: PlanLimit, units: int
    ) -> tuple[Usage, int]: ...

    async def peek(self, user: User, tier: PlanLimit, now: datetime) -> Usage | None: ...

    async def refund(self, meter: Meter, user: User, units: int) -> tuple[bool, int | None]:
        """(whether the live count knows the user's period, the count after the refund or
        None when fewer units were counted)."""
        ...

    def give_back(self) -> list[tuple[CounterKey, int]]: ...

    async def close(self) -> None: ...


# Callbacks to run once a session's transaction has committed (dropped on a rollback).
_ON_COMMIT = "tollhouse.metering.meter.on_commit"
# Callbacks to run once it has ended, committed or not (after the commit callbacks).
_ON_END = "tollhouse.metering.meter.on_end"


def on_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    session.sync_session.info.setdefault(_ON_COMMIT, []).append(callback)


def on_end(session: AsyncSession, callback: Callable[[], None]) -> None:
    session.sync_session.info.setdefault(_ON_END, []).append(callback)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for callback in session.info.pop(_ON_COMMIT, ()):
        callback()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost: its connection's transaction is over
        for callback in session.info.pop(_ON_END, ()):
            callback()


class Meter:
    """`track` and `check` for the hot routes; `flush` writes the batches (a periodic job
    calls it; tests call it when they choose). The durable statements a track needs now and
    then (a lease, the start of a period) run in the caller's session, so they commit or roll
    back with the request, and on SQLite's one connection never wait on it."""

    def __init__(self, database: Database, store: Store, clock: Clock = utcnow) -> None:
        self.database = database
        self.store = store
        self.clock = clock
        self._counts: dict[CounterKey, int] = defaultdict(int)
        self._days: dict[DayKey, int] = defaultdict(int)
        self._flushing = asyncio.Lock()
        # Cleared while a flush's give-backs are sent but not committed.
        self.given_back = asyncio.Event()
        self.given_back.set()

    async def track(
        self, session: AsyncSession, user: User, plan: str, units: int = 1, cache_seconds: float = 0
    ) -> Usage:
        """Count `units` against the user's plan in the current period, or QuotaExceeded.
        The tier's limit may come from memory at most `cache_seconds` old (quota.limit_for)."""
        if units < 1:
            raise ValueError("units must be at least 1")
        now = self.clock()
        tier = await self._tier(session, user, plan, cache_seconds)
        usage, unwritten = await self.store.count(self, session, user, tier, units)
        self.add(user.id, usage.plan, usage.period_start, unwritten)
        self._days[(user.id, user.project_id, now.astimezone(UTC).date())] += units
        return usage

    async def check(
        self, session: AsyncSession, user: User, plan: str, cache_seconds: float = 0
    ) -> Usage:
        """The user's usage, read-only: the live count, else the durable one."""
        now = self.clock()
        tier = await self._tier(session, user, plan, cache_seconds)
        live = await self.store.peek(user, tier, now)
        if live is not None:
            return live
        return await quota.check(session, user, plan, now, cache_seconds=cache_seconds)

    async def refund(self, session: AsyncSession, user: User, units: int) -> int | None:
        """Give back `units` of the current period (work that failed after it was counted,
        as `/gw` does when the upstream fails): the new count, or None when there is nothing
        to give back. The daily series keeps them, as quota.refund's does."""
        if units < 1:
            raise ValueError("units must be at least 1")
        known, count = await self.store.refund(self, user, units)
        if known:
            return count
        return await quota.refund(session, user, units, self.clock())

    async def _tier(
        self, session: AsyncSession, user: User, plan: str, cache_seconds: float
    ) -> PlanLimit:
        if cache_seconds > 0 and (cached := quota.cached_limit(user.project_id, plan)):
            return cached
        return await quota.limit_for(session, user.project_id, plan, cache_seconds)

    def add(self, user_id: uuid.UUID, slug: str, start: datetime, units: int) -> None:
        """Units the durable counter of that period lacks (negative: holds too many)."""
        if units:
            self._counts[(user_id, slug, start)] += units

    def unwritten(self, key: CounterKey) -> int:
        """Units counted for `key` that the durable counter has not received yet."""
        return self._counts.get(key, 0)

    def unflushed_days(
        self, project_id: str, since: date, user_id: uuid.UUID | None = None
    ) -> dict[date, int]:
        """Read-only: the project's units (or one user's) per UTC day from `since` on that this
        process counted and no flush has written to `usage_daily` yet, for a chart to add to
        what it reads there (`quota.daily_series`). Read the database first: a flush takes
        its batch from here before it commits, so in that order a unit is never counted
        twice (at worst missed while the flush is in flight). Other processes' unflushed
        units reach the chart with their own flush."""
        days: dict[date, int] = defaultdict(int)
        for (user, project, day), units in self._days.items():
            if project == project_id and day >= since and user_id in (None, user):
                days[day] += units
        return dict(days)

    async def flush(self) -> int:
        """Write what was counted since the last flush: one statement per table. Returns the
        number of rows written. Counts that fail to write are kept for the next flush."""
        async with self._flushing, self.database.session() as session:
            # Taken only once the connection is ours: on SQLite no request's lease can run
            # between taking the give-backs and committing them.
            await session.connection()
            self.given_back.clear()
            for key, units in self.store.give_back():
                self._counts[key] -= units
            counts, self._counts = self._counts, defaultdict(int)
            days, self._days = self._days, defaultdict(int)
            try:
                await self._write(session, counts, days)
                await session.commit()
            except BaseException:
                for key, units in counts.items():
                    self._counts[key] += units
                for day_key, units in days.items():
                    self._days[day_key] += units
                raise
            finally:
                self.given_back.set()
            return sum(1 for units in counts.values() if units) + len(days)

    async def _write(
        self, session: AsyncSession, counts: dict[CounterKey, int], days: dict[DayKey, int]
    ) -> None:
        now = self.clock()
        await quota.apply_counts(
            session,
            [
                {"user": user, "slug": slug, "start": start, "units": units, "now": now}
                for (user, slug, start), units in counts.items()
                if units
            ],
        )
        await quota.add_to_daily(
            session,
            [
                {"user_id": user, "project_id": project, "day": day, "units": units, "added": units}
                for (user, project, day), units in days.items()
            ],
        )

    async def close(self) -> None:
        """The last flush (leases given back), then the store's connections."""
        try:
            await self.flush()
        finally:
            await self.store.close()


class MemoryStore:
    """The live count in this process, limited tiers on leases (see the module docstring).

    A lease is taken in the request's transaction; its units beyond the request's own become
    usable by other requests only once that transaction has committed, so memory never serves
    a unit the database does not hold. Until then the lease is *in flight*: a request that
    finds the durable counter full while a lease of another transaction is in flight waits
    for it to end and is served from its units (or leases again if it rolled back), so one
    process refuses only when the limit is really reached."""

    def __init__(self, lease_units: int = DEFAULT_LEASE_UNITS) -> None:
        self.lease_units = max(lease_units, 1)
        self._standings: dict[uuid.UUID, Standing] = {}
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        # user → the sessions whose leases are in flight, and the units each holds unused
        self._in_flight: dict[uuid.UUID, dict[int, int]] = {}
        # user → set (and dropped) whenever one of those leases ends
        self._landed: dict[uuid.UUID, asyncio.Event] = {}

    async def count(
        self, meter: Meter, session: AsyncSession, user: User, tier: PlanLimit, units: int
    ) -> tuple[Usage, int]:
        now = meter.clock()
        served = self._serve(user, tier, units, now)
        if served is not None:
            return served
        lock = self._locks.setdefault(user.id, asyncio.Lock())
        if lock.locked() and session.in_transaction():
            # The holder may be waiting for the connection this session holds (SQLite has
            # one): lease without it rather than wait in a cycle.
            return await self._renew(meter, session, user, tier, units, now)
        async with lock:  # one lease at a time per user: the others are served from it
            served = self._serve(user, tier, units, now)
            if served is not None:
                return served
            return await self._renew(meter, session, user, tier, units, now)

    def _serve(
        self, user: User, tier: PlanLimit, units: int, now: datetime
    ) -> tuple[Usage, int] | None:
        """The units counted from memory, or None when the durable counter must be asked."""
        standing = self._standings.get(user.id)
        if standing is None or not standing.serves(tier, now):
            return None
        if tier.limit is None:
            standing.used += units
            return standing.usage(), units
        if standing.held < units:
            return None
        standing.held -= units
        standing.used += units
        return standing.usage(), 0

    def _keep(self, user_id: uuid.UUID, standing: Standing) -> None:
        current = self._standings.get(user_id)
        if current is None or not current.serves_period(standing):
            self._standings[user_id] = standing

    async def _renew(
        self,
        meter: Meter,
        session: AsyncSession,
        user: User,
        tier: PlanLimit,
        units: int,
        now: datetime,
    ) -> tuple[Usage, int]:
        """Ask the durable counter: an unlimited tier's period as it starts it (then written
        behind; the standing is kept once that start is committed), else a new lease."""
        if tier.limit is None:
            count, start, end = await quota.open_period(session, user, tier, now)
            count += meter.unwritten((user.id, tier.slug, start)) + units
            opened = Standing(tier.slug, None, start, end, count)
            on_commit(session, lambda: self._keep(user.id, opened))
            return opened.usage(), units
        while True:
            try:
                block, (count, start, end) = await self._lease(
                    meter, session, user, tier, units, now
                )
                break
            except QuotaExceeded:
                # The counter is full, but leases of other requests may hold units they
                # have not used: committed meanwhile (in memory now), or still in flight
                # (ours to use once they commit, the counter's again if they fail).
                served = self._serve(user, tier, units, now)
                if served is not None:
                    return served
                if not self._others_in_flight(user.id, session):
                    raise
            await self._landed.setdefault(user.id, asyncio.Event()).wait()
            served = self._serve(user, tier, units, now)
            if served is not None:
                return served
        previous = self._standings.get(user.id)
        same = previous is not None and (previous.slug, previous.period_start) == (tier.slug, start)
        held = previous.held if previous is not None and same else 0
        if previous is not None and not same and previous.held:
            meter.add(user.id, previous.slug, previous.period_start, -previous.held)
        # Whatever the durable counter holds beyond our leases was used (here or elsewhere).
        used = max(count - held - block, 0) + units
        if previous is not None and same:
            previous.used, previous.limit, previous.period_end = used, tier.limit, end
            standing = previous
        else:
            standing = Standing(tier.slug, tier.limit, start, end, used, held)
            self._standings[user.id] = standing
        rest = block - units
        if rest:
            on_commit(session, lambda: self._release(meter, user.id, standing, rest))
            self._take_off(user.id, session, rest)
        return standing.usage(), 0

    async def _lease(
        self,
        meter: Meter,
        session: AsyncSession,
        user: User,
        tier: PlanLimit,
        units: int,
        now: datetime,
    ) -> tuple[int, tuple[int, datetime, datetime]]:
        """`_reserve_up_to`, or QuotaExceeded counting only what the user has used; while a
        flush is giving back unused leases, asked again once it has."""
        try:
            return await self._reserve_up_to(session, user, tier, units, now)
        except QuotaExceeded as full:
            if meter.given_back.is_set():
                raise self._refusal(full, self._standings.get(user.id), tier) from None
        await meter.given_back.wait()
        try:
            return await self._reserve_up_to(session, user, tier, units, now)
        except QuotaExceeded as again:
            raise self._refusal(again, self._standings.get(user.id), tier) from None

    def _take_off(self, user_id: uuid.UUID, session: AsyncSession, units: int) -> None:
        """A lease in flight until `session`'s transaction ends (committed or not)."""
        flights = self._in_flight.setdefault(user_id, {})
        key = id(session.sync_session)
        flights[key] = flights.get(key, 0) + units

        def landed() -> None:
            flights.pop(key, None)
            if not flights:
                self._in_flight.pop(user_id, None)
            event = self._landed.pop(user_id, None)
            if event is not None:
                event.set()

        on_end(session, landed)

    def _others_in_flight(self, user_id: uuid.UUID, session: AsyncSession) -> bool:
        """Whether a lease of another transaction than `session`'s is in flight."""
        flights = self._in_flight.get(user_id, {})
        return any(key != id(session.sync_session) for key in flights)

    def _release(self, meter: Meter, user_id: uuid.UUID, standing: Standing, units: int) -> None:
        """A committed lease's spare units: usable from memory, or given back if the standing
        was replaced meanwhile (a new period or plan)."""
        if self._standings.get(user_id) is standing:
            standing.held += units
        else:
            meter.add(user_id, standing.slug, standing.period_start, -units)

    @staticmethod
    def _refusal(full: QuotaExceeded, standing: Standing | None, tier: PlanLimit) -> QuotaExceeded:
        # The durable count includes our own unused lease: the user has not used that.
        ours = standing.held if standing is not None and standing.slug == tier.slug else 0
        return QuotaExceeded(max(full.count - ours, 0), full.limit)

    async def _reserve_up_to(
        self, session: AsyncSession, user: User, tier: PlanLimit, units: int, now: datetime
    ) -> tuple[int, tuple[int, datetime, datetime]]:
        """A lease of METERING_LEASE_UNITS (at least `units`), or of what remains when that
        is less but still covers `units`: (units leased, quota.reserve's answer)."""
        block = max(units, self.lease_units)
        try:
            return block, await quota.reserve(session, user, tier, block, now)
        except QuotaExceeded as full:
            assert tier.limit is not None
            remaining = tier.limit - full.count
            if remaining < units or remaining >= block:
                raise
            return remaining, await quota.reserve(session, user, tier, remaining, now)

    async def peek(self, user: User, tier: PlanLimit, now: datetime) -> Usage | None:
        standing = self._standings.get(user.id)
        if standing is None or not standing.serves(tier, now):
            return None
        return standing.usage()

    async def refund(self, meter: Meter, user: User, units: int) -> tuple[bool, int | None]:
        standing = self._standings.get(user.id)
        if standing is None or meter.clock() >= standing.period_end:
            return False, None
        if standing.used < units:
            return True, None
        standing.used -= units
        if standing.limit is None:
            meter.add(user.id, standing.slug, standing.period_start, -units)
        else:
            standing.held += units  # still in the durable counter: a lease again
        return True, standing.used

    def give_back(self) -> list[tuple[CounterKey, int]]:
        """Every unused lease, to be subtracted from the durable counter by the flush."""
        returned: list[tuple[CounterKey, int]] = []
        for user_id, standing in self._standings.items():
            if standing.held:
                returned.append(((user_id, standing.slug, standing.period_start), standing.held))
                standing.held = 0
        return returned

    async def close(self) -> None:
        self._standings.clear()


# KEYS[1]: the user's counter (a hash: plan, count, start, end; times in epoch ms).
# ARGV: plan, now, units, cap (-1: unlimited), then the seed: count ("" when the caller has
# not read the durable counter yet), start, end, time to live (ms, from the caller's clock).
# Returns {count, start, end} when counted, {-1, count} when over the cap, {-2} for a seed.
_COUNT_SCRIPT = """
local plan = redis.call('HGET', KEYS[1], 'plan')
local ending = tonumber(redis.call('HGET', KEYS[1], 'end') or '0')
if plan ~= ARGV[1] or ending <= tonumber(ARGV[2]) then
  if ARGV[5] == '' then return {-2} end
  redis.call('HSET', KEYS[1], 'plan', ARGV[1], 'count', ARGV[5], 'start', ARGV[6], 'end', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
end
local count = tonumber(redis.call('HGET', KEYS[1], 'count'))
local units = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap >= 0 and count + units > cap then return {-1, count} end
count = redis.call('HINCRBY', KEYS[1], 'count', units)
return {count, redis.call('HGET', KEYS[1], 'start'), redis.call('HGET', KEYS[1], 'end')}
"""
# KEYS[1] as above; ARGV: now, units. {count, plan, start} after giving back; {-2} when
# the key holds no current period; {-1} when fewer units were counted.
_REFUND_SCRIPT = """
local ending = tonumber(redis.call('HGET', KEYS[1], 'end') or '0')
if ending <= tonumber(ARGV[1]) then return {-2} end
local count = tonumber(redis.call('HGET', KEYS[1], 'count'))
if count < tonumber(ARGV[2]) then return {-1} end
count = redis.call('HINCRBY', KEYS[1], 'count', -tonumber(ARGV[2]))
return {count, redis.call('HGET', KEYS[1], 'plan'), redis.call('HGET', KEYS[1], 'start')}
"""
_NEEDS_SEED = -2
_OVER_CAP = -1
# A key outlives its period by a day: a replica whose clock is slightly behind still finds it.
_KEY_GRACE_MS = 86_400_000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _moment(ms: Any) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


class RedisStore:
    """The live count in Redis, shared by every replica (see the module docstring)."""

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_COUNT_SCRIPT)
        self._refund = client.register_script(_REFUND_SCRIPT)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisStore:
        return cls(Redis.from_url(url), prefix)

    def _key(self, user: User) -> str:
        return f"{self._prefix}{user.id}"

    async def count(
        self, meter: Meter, session: AsyncSession, user: User, tier: PlanLimit, units: int
    ) -> tuple[Usage, int]:
        now = meter.clock()
        cap = -1 if tier.limit is None else tier.limit
        args: list[Any] = [tier.slug, _ms(now), units, cap, "", 0, 0, 0]
        answer = await self._script(keys=[self._key(user)], args=args)
        if int(answer[0]) == _NEEDS_SEED:
            # Start the period in the durable counter first, so flushes land in it.
            count, start, end = await quota.open_period(session, user, tier, now)
            count += meter.unwritten((user.id, tier.slug, start))
            args[4:] = [count, _ms(start), _ms(end), _ms(end) - _ms(now) + _KEY_GRACE_MS]
            answer = await self._script(keys=[self._key(user)], args=args)
        if int(answer[0]) == _OVER_CAP:
            assert tier.limit is not None
            raise QuotaExceeded(int(answer[1]), tier.limit)
        count, start, end = int(answer[0]), _moment(answer[1]), _moment(answer[2])
        return Usage(count, tier.limit, tier.slug, start, end), units

    async def peek(self, user: User, tier: PlanLimit, now: datetime) -> Usage | None:
        values = await self._client.hmget(self._key(user), ["plan", "count", "start", "end"])
        plan, count, start, end = (
            value.decode() if isinstance(value, bytes) else value for value in values
        )
        if plan != tier.slug or count is None or end is None or int(end) <= _ms(now):
            return None
        return Usage(int(count), tier.limit, tier.slug, _moment(start), _moment(end))

    async def refund(self, meter: Meter, user: User, units: int) -> tuple[bool, int | None]:
        answer = await self._refund(keys=[self._key(user)], args=[_ms(meter.clock()), units])
        if int(answer[0]) == _NEEDS_SEED:
            return False, None
        if int(answer[0]) == _OVER_CAP:
            return True, None
        count, slug, start = int(answer[0]), answer[1], _moment(answer[2])
        meter.add(user.id, slug.decode() if isinstance(slug, bytes) else str(slug), start, -units)
        return True, count

    def give_back(self) -> list[tuple[CounterKey, int]]:
        return []  # nothing is leased: Redis holds the count

    async def close(self) -> None:
        await self._client.aclose()


def meter_from_settings(
    database: Database,
    redis_url: str | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    lease_units: int = DEFAULT_LEASE_UNITS,
    clock: Clock = utcnow,
) -> Meter:
    """Redis when a URL is configured (exact across replicas), else this process's memory."""
    store: Store = RedisStore.from_url(redis_url, prefix) if redis_url else MemoryStore(lease_units)
    return Meter(database, store, clock)


def meter_of(request: Request) -> Meter:
    """The app's quota meter (wiring.meter): every counted unit goes through it, so the
    Platform API's calls and `/gw` share one count (in process or in Redis)."""
    return cast(Meter, request.app.state.meter)
