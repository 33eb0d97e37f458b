"""How fast the ledger spends and reads balances, against the same SQL through the raw driver.

Run `.venv/bin/python bench/ledger.py`; flags: --duration, --workers, --postgres-url,
--skip-postgres, --skip-sqlite. Each backend gets its own table: PostgreSQL in a fresh
database that is dropped afterwards (skipped when the server does not answer), then SQLite
in a temp file. Both are migrated with Alembic and seeded with 1,000 funded accounts.

  (a) spends/s, each worker spending 1 from a random one of the 1,000 accounts:
      target >= 1,000/s and >= 0.5x raw
  (b) spends/s, every worker spending from the same account: target >= 300/s
  (c) balance read p50 on an account with 100,000 transactions over one with 10: <= 1.2x

"ours" is `tollhouse.ledger.service` in a `Database` session: the request path without
HTTP. "raw" is the statements it emits, sent through asyncpg or aiosqlite with a pool of
the same size (bench/ledger_baseline.py). Raw and ours run in the order raw, ours, ours, raw
and each figure is the mean of its two runs, so linear drift hits both equally.

Exit status: 0 every row passes, 1 a row fails or the ledger audit finds a mismatch,
2 nothing ran.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url

from ledger_baseline import AsyncpgLedger, RawLedger, SqliteLedger  # bench/ is on sys.path
from tollhouse.config import normalize_database_url
from tollhouse.db.engine import Database
from tollhouse.db.migrate import upgrade
from tollhouse.identity.models import User
from tollhouse.identity.service import resolve_user
from tollhouse.ledger import service
from tollhouse.tenancy.service import ensure_home_project

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ACCOUNTS = 1_000
GRANT = 10_000_000  # far more than any run can spend, so no spend is refused
SPEND = 1
SPEND_TYPE = "generation"
GRANT_TYPE = "admin_grant"
SEED_BATCH = 100
BIG_HISTORY = 100_000
SMALL_HISTORY = 10
READS = 2_000
READ_WARMUP = 100
WARMUP_SECONDS = 1.0
# Symmetric around the middle: the means of raw and ours see the same linear drift.
RUN_ORDER = ("raw", "ours", "ours", "raw")
# Raw SQLite gets a pool of its own (our engine always runs SQLite on one connection).
SQLITE_RAW_CONNECTIONS = 15
CONNECT_TIMEOUT_SECONDS = 5.0

SPREAD_MIN_RATE = 1_000.0
SPREAD_MIN_RATIO = 0.5
HOT_MIN_RATE = 300.0
READ_MAX_RATIO = 1.2

SpendFn = Callable[[uuid.UUID], Awaitable[object]]
ReadFn = Callable[[], Awaitable[object]]

# Wide enough for the table when piped (rich would fall back to 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=150)
progress = Console(stderr=True, style="dim")


class BenchError(RuntimeError):
    """The benchmark could not run as designed; the message says what went wrong."""


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    spends: int
    errors: int
    seconds: float
    first_error: str | None
    # This process's CPU in the window as a share of one core (SQLite's threads included):
    # near 100 % means the Python side, not the database, set the pace.
    cpu: float

    @property
    def rate(self) -> float:
        return self.spends / self.seconds


@dataclass(slots=True)
class _Tally:
    window_start: float
    window_end: float
    spends: int = 0
    errors: int = 0
    first_error: str | None = None

    def record(self, done: float, error: str | None) -> None:
        # A spend counts when it finishes inside the window: in-flight ones at both ends cancel.
        if not self.window_start <= done < self.window_end:
            return
        if error is None:
            self.spends += 1
            return
        self.errors += 1
        self.first_error = self.first_error or error


async def _worker(spend: SpendFn, pick: Callable[[], uuid.UUID], tally: _Tally) -> None:
    while time.perf_counter() < tally.window_end:
        error: str | None = None
        try:
            await spend(pick())
        except Exception as exc:  # counted and shown, not allowed to stop the other workers
            error = f"{type(exc).__name__}: {exc}"
        tally.record(time.perf_counter(), error)


async def _drive(
    spend: SpendFn, pick: Callable[[], uuid.UUID], workers: int, duration: float
) -> Run:
    """`workers` concurrent spenders for warm-up + `duration`; counts the `duration` part."""
    start = time.perf_counter() + WARMUP_SECONDS
    tally = _Tally(window_start=start, window_end=start + duration)
    cpu = asyncio.create_task(_cpu_share(tally))
    await asyncio.gather(*(_worker(spend, pick, tally) for _ in range(workers)))
    return Run(tally.spends, tally.errors, duration, tally.first_error, await cpu)


async def _cpu_share(tally: _Tally) -> float:
    await asyncio.sleep(tally.window_start - time.perf_counter())
    started, cpu_before = time.perf_counter(), time.process_time()
    await asyncio.sleep(tally.window_end - time.perf_counter())
    return (time.process_time() - cpu_before) / (time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One throughput scenario: every run of ours and of raw."""

    ours: list[Run]
    raw: list[Run]

    @property
    def ours_rate(self) -> float:
        return statistics.mean(run.rate for run in self.ours)

    @property
    def raw_rate(self) -> float:
        return statistics.mean(run.rate for run in self.raw)

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.raw_rate if self.raw_rate else math.nan

    @property
    def errors(self) -> int:
        return sum(run.errors for run in (*self.ours, *self.raw))


async def _compare(
    spends: dict[str, SpendFn], pick: Callable[[], uuid.UUID], workers: int, duration: float
) -> Comparison:
    runs: dict[str, list[Run]] = {"ours": [], "raw": []}
    for side in RUN_ORDER:
        runs[side].append(await _drive(spends[side], pick, workers, duration))
    return Comparison(ours=runs["ours"], raw=runs["raw"])


def _p50_ms(seconds: list[float]) -> float:
    """Nearest-rank median: an observed latency, never an interpolation."""
    ordered = sorted(seconds)
    return ordered[max(math.ceil(len(ordered) / 2) - 1, 0)] * 1000


@dataclass(frozen=True, slots=True)
class ReadLatency:
    small_p50_ms: float
    big_p50_ms: float

    @property
    def ratio(self) -> float:
        return self.big_p50_ms / self.small_p50_ms


async def _read_latency(read_small: ReadFn, read_big: ReadFn, count: int) -> ReadLatency:
    """One reader; the two accounts alternate (and swap order) so drift hits both alike."""
    for _ in range(READ_WARMUP):
        await read_small()
        await read_big()
    small: list[float] = []
    big: list[float] = []
    for index in range(count):
        pairs = [(read_small, small), (read_big, big)]
        if index % 2:
            pairs.reverse()
        for read, sink in pairs:
            began = time.perf_counter()
            await read()
            sink.append(time.perf_counter() - began)
    return ReadLatency(_p50_ms(small), _p50_ms(big))


# --- our code path ---------------------------------------------------------------------------


def _our_spend(db: Database) -> SpendFn:
    async def spend(account_id: uuid.UUID) -> None:
        async with db.session() as session:
            await service.spend(session, account_id, SPEND, SPEND_TYPE)

    return spend


def _raw_spend(raw: RawLedger) -> SpendFn:
    async def spend(account_id: uuid.UUID) -> None:
        await raw.spend(account_id, SPEND)

    return spend


def _balance_of(db: Database, account_id: uuid.UUID) -> ReadFn:
    async def read() -> int:
        async with db.session() as session:
            return await service.balance_of(session, account_id)

    return read


def _balance_route_query(db: Database, user: User) -> ReadFn:
    """What GET /api/v1/credits/balance runs once the caller is known: ensure_account."""

    async def read() -> int:
        async with db.session() as session:
            return (await service.ensure_account(session, user)).balance

    return read


# --- seeding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    user: User
    account_id: uuid.UUID


def _batches(count: int) -> Iterator[range]:
    for first in range(0, count, SEED_BATCH):
        yield range(first, min(first + SEED_BATCH, count))


async def _seed_accounts(db: Database, prefix: str, count: int, grant: int) -> list[Seeded]:
    """`count` users through the service layer, each with an account holding `grant`."""
    async with db.session() as session:
        project_id = (await ensure_home_project(session, "home", "home")).id
    seeded: list[Seeded] = []
    for batch in _batches(count):
        async with db.session() as session:
            for index in batch:
                user, _ = await resolve_user(session, project_id, f"{prefix}-{index}")
                account = await service.ensure_account(session, user)
                if grant:
                    await service.grant(session, account.id, grant, GRANT_TYPE)
                seeded.append(Seeded(user, account.id))
    return seeded


async def _seed_readers(db: Database, raw: RawLedger) -> tuple[Seeded, Seeded]:
    """Two empty accounts given SMALL_HISTORY and BIG_HISTORY +1 transactions in bulk."""
    small, big = await _seed_accounts(db, "bench-reader", 2, grant=0)
    for seeded, history in ((small, SMALL_HISTORY), (big, BIG_HISTORY)):
        await raw.seed_history(seeded.account_id, history)
        balance = await _balance_of(db, seeded.account_id)()
        if balance != history:
            raise BenchError(f"seeded {history:,} transactions but the balance reads {balance}")
    return small, big


# --- one backend -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    url: str  # SQLAlchemy URL with the async driver
    engine_kwargs: dict[str, Any]
    description: str  # server/library version and where the data lives
    pools: str  # how many connections each side gets
    cpu_note: str = ""  # what the process CPU figure includes beyond Python


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    ours: str
    baseline: str
    ratio: str
    target: str
    passed: bool


@dataclass(slots=True)
class Report:
    backend: Backend
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    audit_ok: bool = True

    @property
    def passed(self) -> bool:
        return self.audit_ok and all(row.passed for row in self.rows)


@dataclass(frozen=True, slots=True)
class Measured:
    spread: Comparison
    hot: Comparison
    balance_reads: ReadLatency
    route_reads: ReadLatency
    audit: service.AuditReport


async def _bench_backend(backend: Backend, raw: RawLedger, workers: int, duration: float) -> Report:
    db = Database(backend.url, **backend.engine_kwargs)
    try:
        progress.print(f"{backend.name}: seeding {ACCOUNTS:,} accounts")
        spenders = [
            seeded.account_id for seeded in await _seed_accounts(db, "bench", ACCOUNTS, GRANT)
        ]
        progress.print(f"{backend.name}: bulk-loading {BIG_HISTORY:,} transactions")
        small, big = await _seed_readers(db, raw)
        spends = {"ours": _our_spend(db), "raw": _raw_spend(raw)}
        progress.print(f"{backend.name}: (a) spends over {ACCOUNTS:,} accounts")
        spread = await _compare(spends, lambda: random.choice(spenders), workers, duration)
        progress.print(f"{backend.name}: (b) spends on one account")
        hot = await _compare(spends, lambda: spenders[0], workers, duration)
        progress.print(f"{backend.name}: (c) balance reads")
        balance_reads = await _read_latency(
            _balance_of(db, small.account_id), _balance_of(db, big.account_id), READS
        )
        route_reads = await _read_latency(
            _balance_route_query(db, small.user), _balance_route_query(db, big.user), READS
        )
        async with db.session() as session:
            audit = await service.audit(session)
    finally:
        await db.dispose()
    measured = Measured(spread, hot, balance_reads, route_reads, audit)
    return _report(backend, workers, duration, measured)


# --- reporting -------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _spread_row(spread: Comparison, workers: int) -> Row:
    passed = (
        spread.errors == 0
        and spread.ours_rate >= SPREAD_MIN_RATE
        and spread.ratio >= SPREAD_MIN_RATIO
    )
    return Row(
        f"(a) spends, {ACCOUNTS:,} accounts, {workers} workers",
        _rate(spread.ours_rate),
        f"{_rate(spread.raw_rate)} raw",
        f"{spread.ratio:.2f}x",
        f">= {SPREAD_MIN_RATE:,.0f}/s and >= {SPREAD_MIN_RATIO}x raw",
        passed,
    )


def _hot_row(hot: Comparison, workers: int) -> Row:
    return Row(
        f"(b) spends, 1 hot account, {workers} workers",
        _rate(hot.ours_rate),
        f"{_rate(hot.raw_rate)} raw",
        f"{hot.ratio:.2f}x",
        f">= {HOT_MIN_RATE:,.0f}/s",
        hot.errors == 0 and hot.ours_rate >= HOT_MIN_RATE,
    )


def _read_row(label: str, reads: ReadLatency) -> Row:
    return Row(
        f"(c) {label} p50, {BIG_HISTORY:,} vs {SMALL_HISTORY} txns",
        f"{reads.big_p50_ms:.3f} ms",
        f"{reads.small_p50_ms:.3f} ms @ {SMALL_HISTORY} txns",
        f"{reads.ratio:.2f}x",
        f"<= {READ_MAX_RATIO}x",
        reads.ratio <= READ_MAX_RATIO,
    )


def _runs_note(label: str, comparison: Comparison) -> str:
    def rates(runs: list[Run]) -> str:
        return ", ".join(f"{run.rate:,.0f}/s (CPU {run.cpu:.0%})" for run in runs)

    return f"{label} per run: raw {rates(comparison.raw)}; ours {rates(comparison.ours)}"


def _errors_note(label: str, comparison: Comparison) -> str | None:
    failed = [run for run in (*comparison.ours, *comparison.raw) if run.errors]
    if not failed:
        return None
    ours = sum(run.errors for run in comparison.ours)
    raw = sum(run.errors for run in comparison.raw)
    first = next(run.first_error for run in failed if run.first_error)
    return f"{label} ERRORS: ours {ours:,}, raw {raw:,}; first: {first}"


def _report(backend: Backend, workers: int, duration: float, measured: Measured) -> Report:
    spread, hot = measured.spread, measured.hot
    report = Report(backend, audit_ok=measured.audit.ok)
    report.rows = [
        _spread_row(spread, workers),
        _hot_row(hot, workers),
        _read_row("balance_of", measured.balance_reads),
        _read_row("GET /balance query", measured.route_reads),
    ]
    report.notes = [
        f"database: {backend.description}",
        f"pools: {backend.pools}",
        f"(a), (b): each figure is the mean of {len(RUN_ORDER) // 2} runs of {duration:g} s after"
        f" {WARMUP_SECONDS:g} s warm-up, in the order {', '.join(RUN_ORDER)}; a spend is"
        f" {SPEND} credit in one DB transaction; no spend may fail",
        _runs_note("(a)", spread),
        _runs_note("(b)", hot),
        f"CPU: this process's CPU time during the window as a share of one core{backend.cpu_note}",
        f"(c): 'ours' is the p50 on the account with {BIG_HISTORY:,} transactions, 'baseline'"
        f" the same read on the one with {SMALL_HISTORY}; one reader, {READS:,} reads per"
        f" account alternating between the two after {READ_WARMUP} warm-up reads each, one"
        " session per read. 'GET /balance query' is service.ensure_account, what that route"
        " runs once the caller is known (no HTTP, no auth)",
        *filter(None, (_errors_note("(a)", spread), _errors_note("(b)", hot))),
        _audit_note(measured.audit),
    ]
    return report


def _audit_note(audit: service.AuditReport) -> str:
    counts = f"{audit.accounts_checked:,} accounts, {audit.transactions_checked:,} transactions"
    if audit.ok:
        return f"ledger audit after the run: consistent ({counts}, ours and raw rows alike)"
    return f"LEDGER AUDIT FAILED: {len(audit.mismatches):,} mismatches ({counts})"


def _print_report(report: Report) -> None:
    table = Table(title=f"{report.backend.name}: ledger spends and balance reads")
    table.add_column("scenario")
    table.add_column("ours", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ours / baseline", justify="right")
    table.add_column("target")
    table.add_column("result")
    for row in report.rows:
        result = "[green]PASS[/]" if row.passed else "[bold red]FAIL[/]"
        table.add_row(row.scenario, row.ours, row.baseline, row.ratio, row.target, result)
    console.print(table)
    for note in report.notes:
        console.print(f"- {escape(note)}")
    console.print()


# --- PostgreSQL ------------------------------------------------------------------------------


def _plain_postgres_url(url: str) -> str:
    """The URL as asyncpg takes it (no +driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _server_version(server_url: str) -> str:
    """The server's version; raises OSError or asyncpg's errors when it does not answer."""
    conn = await asyncpg.connect(_plain_postgres_url(server_url), timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _admin_execute(server_url: str, sql: str) -> None:
    # asyncpg runs statements outside a transaction, as CREATE/DROP DATABASE require.
    conn = await asyncpg.connect(_plain_postgres_url(server_url), timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def _fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new empty database on the server (its plain URL), dropped afterwards whatever happens."""
    name = f"tollhouse_bench_{secrets.token_hex(6)}"
    await _admin_execute(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(_plain_postgres_url(server_url))
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        try:
            await _admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (OSError, asyncpg.PostgresError) as exc:
            progress.print(f"[red]could not drop database {name}: {exc}[/]")


async def _bench_postgres(server_url: str, workers: int, duration: float) -> Report | None:
    try:
        version = await _server_version(server_url)
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        console.print(
            f"PostgreSQL at {escape(_shown(server_url))} is unreachable"
            f" ({type(exc).__name__}: {escape(str(exc))}): PostgreSQL part skipped\n"
        )
        return None
    async with _fresh_database(server_url) as plain_url:
        url = normalize_database_url(plain_url)
        progress.print(f"PostgreSQL: migrating {_shown(url)}")
        await asyncio.to_thread(upgrade, url)
        backend = Backend(
            name="PostgreSQL",
            url=url,
            engine_kwargs={"pool_size": workers, "max_overflow": 0},
            cpu_note=" (PostgreSQL's server processes are not included)",
            description=f"PostgreSQL {version} at {_shown(server_url)},"
            " a fresh database, dropped afterwards",
            pools=f"ours Database(pool_size={workers}, max_overflow=0);"
            f" raw asyncpg pool of {workers}",
        )
        raw = await AsyncpgLedger.open(plain_url, workers)
        try:
            return await _bench_backend(backend, raw, workers, duration)
        finally:
            await raw.close()


# --- SQLite ----------------------------------------------------------------------------------


async def _bench_sqlite(workers: int, duration: float) -> Report:
    with tempfile.TemporaryDirectory(prefix="tollhouse-ledger-bench-") as directory:
        path = Path(directory) / "ledger.db"
        url = f"sqlite+aiosqlite:///{path}"
        progress.print(f"SQLite: migrating {path}")
        await asyncio.to_thread(upgrade, url)
        size = SQLITE_RAW_CONNECTIONS
        backend = Backend(
            name="SQLite",
            url=url,
            engine_kwargs={},
            description=f"SQLite {sqlite3.sqlite_version}, file in a temp dir, WAL,"
            " synchronous=NORMAL, every transaction BEGIN IMMEDIATE (as tollhouse.db.engine)",
            cpu_note=" (SQLite itself runs in aiosqlite's threads, so it is included)",
            pools="ours Database with one connection (tollhouse.db.engine runs SQLite so);"
            f" raw {size} aiosqlite connections",
        )
        raw = await SqliteLedger.open(str(path), size)
        try:
            return await _bench_backend(backend, raw, workers, duration)
        finally:
            await raw.close()


# --- entry point -----------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (5)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent spenders (32)")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a server URL whose user may CREATE DATABASE (%(default)s)",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.workers < 1:
        parser.error("--duration must be > 0 and --workers >= 1")
    return args


async def _bench(args: argparse.Namespace) -> list[Report]:
    reports: list[Report] = []
    if not args.skip_postgres:
        report = await _bench_postgres(args.postgres_url, args.workers, args.duration)
        if report is not None:
            _print_report(report)
            reports.append(report)
    if not args.skip_sqlite:
        report = await _bench_sqlite(args.workers, args.duration)
        _print_report(report)
        reports.append(report)
    return reports


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed, as uvicorn serves the app with it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    loop_factory = _event_loop_factory()
    console.print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, event loop"
        f" {'uvloop' if loop_factory else 'asyncio'}; benchmark and database on the same host\n"
    )
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        reports = runner.run(_bench(args))
    if not reports:
        return 2
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
