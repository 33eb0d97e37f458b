"""The credit ledger: verify, sweep, grant, history."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollhouse.commands.common import JsonOption, emit, emit_json, fail, progress, run, say

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tollhouse.config import Settings
    from tollhouse.ledger.service import AuditReport

ledger_app = typer.Typer(rich_markup_mode=None, help="The credit ledger.", no_args_is_help=True)
credits_app = typer.Typer(
    rich_markup_mode=None, help="Users' credits: grants and history.", no_args_is_help=True
)
UserArgument = Annotated[str, typer.Argument(help="User id or external id (home project).")]


@ledger_app.command("verify")
def ledger_verify(json_output: JsonOption = False) -> None:
    """Check every balance against its transaction log; exit code 1 on any mismatch."""
    from tollhouse.ledger import service as ledger

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> AuditReport:
        return await ledger.audit(session)

    with progress("Checking every balance against its log…", as_json=json_output):
        report = run(work, needs_secrets=False)
    if json_output:
        emit_json(
            {
                "ok": report.ok,
                "accounts_checked": report.accounts_checked,
                "transactions_checked": report.transactions_checked,
                "mismatches": [asdict(m) for m in report.mismatches],
            }
        )
    elif report.ok:
        typer.echo(
            f"ok: {report.accounts_checked} accounts, "
            f"{report.transactions_checked} transactions, every balance matches its log"
        )
    else:
        for m in report.mismatches:
            at = f" at transaction {m.transaction_id}" if m.transaction_id else ""
            typer.echo(
                f"account {m.account_id} (user {m.user_id}): {m.problem}{at}: "
                f"the log says {m.expected}, the row says {m.actual}"
            )
    if not report.ok:
        fail(f"{len(report.mismatches)} mismatch(es)", 1)


@ledger_app.command("sweep")
def ledger_sweep(json_output: JsonOption = False) -> None:
    """Release every hold that expired without being settled."""
    from tollhouse.kit.clock import utcnow
    from tollhouse.ledger import service as ledger

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> int:
        return await ledger.release_expired_holds(session, utcnow())

    released = run(work, needs_secrets=False)
    say(f"released {released} expired hold(s)", as_json=json_output, released=released)


@credits_app.command("grant")
def credits_grant(
    user: UserArgument,
    amount: Annotated[int, typer.Argument(min=1, max=2**31 - 1)],
    description: Annotated[str, typer.Option(help="Shown in the user's history.")] = (
        "Manual top-up"
    ),
    json_output: JsonOption = False,
) -> None:
    """Grant AMOUNT credits to USER (logged as an admin_grant, like the admin API's)."""
    from tollhouse.identity import service as identity
    from tollhouse.ledger import service as ledger

    async def work(session: AsyncSession, home: str, _settings: Settings) -> int:
        account = await ledger.ensure_account(
            session, await identity.find_user(session, home, user)
        )
        entry = await ledger.grant(
            session, account.id, amount, "admin_grant", description=description
        )
        return entry.balance_after

    balance = run(work, needs_secrets=False)
    say(
        f"granted {amount}; balance {balance}", as_json=json_output, granted=amount, balance=balance
    )


@credits_app.command("history")
def credits_history(
    user: UserArgument,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_output: JsonOption = False,
) -> None:
    """USER's balance and transactions, newest first."""
    from tollhouse.identity import service as identity
    from tollhouse.ledger import service as ledger

    async def work(session: AsyncSession, home: str, _settings: Settings) -> list[dict[str, Any]]:
        account = await ledger.ensure_account(
            session, await identity.find_user(session, home, user)
        )
        rows = await ledger.history(session, account.id, limit=limit, offset=offset)
        return [
            {
                "id": row.id,
                "amount": row.amount,
                "balance_after": row.balance_after,
                "type": row.type,
                "description": row.description,
                "created_at": row.created_at.isoformat(timespec="seconds"),
            }
            for row in rows
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title=f"Credits of {user}")


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(credits_app, name="credits")
