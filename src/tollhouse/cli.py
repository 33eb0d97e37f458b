"""`tollhouse serve | migrate | users | tokens | secrets`."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Literal, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse import __version__, serving, wiring
from tollhouse.app import ROLE_ENV, Role
from tollhouse.config import ConfigError, Settings, load_settings, read_dev_secrets
from tollhouse.db import migrate as migrations
from tollhouse.db.engine import Database
from tollhouse.identity import service as identity
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import NotFound, TollhouseError
from tollhouse.ledger import service as ledger
from tollhouse.tenancy import developers
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Platform, Project

app = typer.Typer(help="Tollhouse: the front door of paid APIs.", no_args_is_help=True)
users_app = typer.Typer(help="Users of the home project.", no_args_is_help=True)
tokens_app = typer.Typer(help="Access and refresh tokens.", no_args_is_help=True)
ledger_app = typer.Typer(help="The credit ledger.", no_args_is_help=True)
secrets_app = typer.Typer(
    help="Development secrets kept in the data directory.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(ledger_app, name="ledger")
app.add_typer(secrets_app, name="secrets")
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def _version(value: bool) -> None:
    if value:
        console.print(f"tollhouse {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Tollhouse: the front door of paid APIs."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    role: Annotated[
        Role,
        typer.Option(
            help="all: everything (billing in-process unless BILLING_SERVICE_URL); gateway: "
            "the same, for a split deployment; billing: the billing service alone."
        ),
    ] = "all",
) -> None:
    """Serve the API. The embedded SQLite database is migrated automatically."""
    # The app factory runs in uvicorn (in each worker): it reads the role from the environment.
    os.environ[ROLE_ENV] = role

    settings = _settings()
    url = settings.effective_database_url
    if settings.is_embedded_database:
        migrations.upgrade(url)
    elif not migrations.is_up_to_date(url):
        err.print(
            "[red]The database is not at the latest migration: run `tollhouse migrate`.[/red]"
        )
        raise typer.Exit(2)
    console.print(
        f"Tollhouse {__version__} on http://{host}:{port} "
        f"([bold]{'SQLite' if settings.is_embedded_database else 'PostgreSQL'}[/bold], "
        f"{settings.tollhouse_env}, role {role})"
    )
    # Each worker its own SO_REUSEPORT socket, so the kernel splits connections (serving.py).
    serving.run(host, port, workers, access_log=False, log_config=None, proxy_headers=True)


@app.command()
def migrate() -> None:
    """Bring the database to the latest schema."""
    settings = _settings()
    migrations.upgrade(settings.effective_database_url)
    console.print(f"[green]Database at revision {migrations.head_revision()}[/green]")


def _run(work: Callable[[AsyncSession, str, Settings], Awaitable[T]]) -> T:
    """Run `work(session, home_project_id, settings)` in one committed unit of work."""
    settings = _settings()
    if settings.is_embedded_database:
        migrations.upgrade(settings.effective_database_url)

    async def main() -> T:
        database = Database(settings.effective_database_url)
        try:
            async with database.session() as session:
                home = await wiring.home_project_id(session, settings)
                return await work(session, home, settings)
        finally:
            await database.dispose()

    try:
        return asyncio.run(main())
    except TollhouseError as exc:
        err.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(1) from exc


@users_app.command("resolve")
def users_resolve(
    external_id: str,
    email: Annotated[str | None, typer.Option(help="Email to store.")] = None,
    display_name: Annotated[str | None, typer.Option(help="Name to show.")] = None,
) -> None:
    """Find or create the user with EXTERNAL_ID; prints its id."""

    async def work(session: AsyncSession, home: str, settings: Settings) -> tuple[str, bool]:
        user, created = await identity.resolve_user(
            session,
            home,
            external_id,
            email=email,
            display_name=display_name,
            hooks=wiring.identity_context(settings, home).user_created_hooks,
        )
        return str(user.id), created

    user_id, created = _run(work)
    typer.echo(json.dumps({"user_id": user_id, "created": created}))


@tokens_app.command("issue")
def tokens_issue(user: Annotated[str, typer.Argument(help="User id or external id.")]) -> None:
    """Print a fresh access + refresh token pair for USER."""

    async def work(session: AsyncSession, home: str, settings: Settings) -> identity.TokenPair:
        found = await identity.find_user(session, home, user)
        return await identity.sign_in(
            session, found, identity.TokenSettings.from_settings(settings)
        )

    pair = _run(work)
    console.print_json(
        json.dumps(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "token_type": pair.token_type,
                "expires_in": pair.expires_in,
            }
        )
    )


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Check every balance against its transaction log; exit code 1 on any mismatch."""

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> ledger.AuditReport:
        return await ledger.audit(session)

    report = _run(work)
    if report.ok:
        console.print(
            f"[green]ok[/green]: {report.accounts_checked} accounts, "
            f"{report.transactions_checked} transactions, every balance matches its log"
        )
        return
    for m in report.mismatches:
        at = f" at transaction {m.transaction_id}" if m.transaction_id else ""
        typer.echo(
            f"account {m.account_id} (user {m.user_id}): {m.problem}{at}: "
            f"the log says {m.expected}, the row says {m.actual}"
        )
    err.print(f"[red]{len(report.mismatches)} mismatch(es)[/red]")
    raise typer.Exit(1)


@ledger_app.command("sweep")
def ledger_sweep() -> None:
    """Release every hold that expired without being settled."""

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> int:
        return await ledger.release_expired_holds(session, utcnow())

    console.print(f"released {_run(work)} expired hold(s)")


@secrets_app.command("show")
def secrets_show(
    name: Annotated[
        str | None, typer.Argument(help="Print only this one (e.g. FLASH_SERVICE_KEY).")
    ] = None,
) -> None:
    """The generated development secrets (never used in production)."""
    settings = _settings()
    if settings.is_production:
        err.print("[red]Production secrets come from the environment; nothing to show.[/red]")
        raise typer.Exit(2)
    stored = read_dev_secrets(settings.tollhouse_data_dir, create=True)
    effective = {key.upper(): settings.secret(key) or stored[key] for key in stored}
    if name is not None:
        if name.upper() not in effective:
            err.print(f"[red]No generated secret named {name}.[/red]")
            raise typer.Exit(1)
        typer.echo(effective[name.upper()])
        return
    table = Table("name", "value", title=f"Secrets in {settings.tollhouse_data_dir}")
    for key, value in effective.items():
        table.add_row(key, value)
    console.print(table)


def main() -> None:
    app()


# --- platforms, projects and keys (the Developer API's operator mirror) --------------------

platform_app = typer.Typer(help="Developer platforms.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects of a platform.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of projects.", no_args_is_help=True)
app.add_typer(platform_app, name="platform")
app.add_typer(projects_app, name="projects")
app.add_typer(keys_app, name="keys")
CLI_AUDIT = {"via": "cli"}


def _pepper(settings: Settings) -> str:
    return settings.secret("tollhouse_secret_pepper") or ""


def _print_once(values: dict[str, str]) -> None:
    """Plaintext secrets, printed once as JSON; they are not stored anywhere."""
    typer.echo(json.dumps(values, indent=2))
    err.print("[yellow]Keep these now: secrets are shown only once.[/yellow]")


@platform_app.command("create")
def platform_create(
    email: Annotated[str, typer.Option(help="The developer's email (their login).")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="At least 10 characters.")
    ],
) -> None:
    """A developer account and its platform; prints the platform id and an access token."""

    async def work(session: AsyncSession, _home: str, settings: Settings) -> dict[str, str]:
        developer = await developers.sign_up(session, email, password)
        issued = await developers.create_personal_token(
            session, _pepper(settings), developer.id, "cli"
        )
        await tenancy.record(
            session,
            developer.platform_id,
            "developer.signup",
            developer_id=developer.id,
            detail=CLI_AUDIT,
        )
        return {
            "platform_id": developer.platform_id,
            "developer_id": developer.id,
            "personal_access_token": issued.plaintext,
        }

    _print_once(_run(work))


@projects_app.command("create")
def projects_create(
    platform_id: str,
    name: str,
    type: Annotated[str, typer.Option("--type", help="saas, store or membership.")] = "saas",
    mode: Annotated[str, typer.Option(help="test or live.")] = "test",
) -> None:
    """A project with its first publishable and secret key (printed once)."""
    if type not in ("saas", "store", "membership") or mode not in ("test", "live"):
        err.print("[red]--type is saas|store|membership and --mode is test|live.[/red]")
        raise typer.Exit(2)
    checked_mode: Literal["test", "live"] = "live" if mode == "live" else "test"

    async def work(session: AsyncSession, _home: str, settings: Settings) -> dict[str, str]:
        if await session.get(Platform, platform_id) is None:
            raise NotFound(f"No platform {platform_id}.")
        new = await tenancy.create_project_with_keys(
            session, _pepper(settings), platform_id, name=name, mode=checked_mode, type=type
        )
        await tenancy.record(
            session,
            platform_id,
            "project.create",
            target=new.project.id,
            detail={**CLI_AUDIT, "name": name, "mode": mode, "type": type},
        )
        return {
            "project_id": new.project.id,
            "publishable_key": new.publishable.plaintext,
            "secret_key": new.secret.plaintext,
        }

    _print_once(_run(work))


@keys_app.command("roll")
def keys_roll(
    key_id: str,
    grace_hours: Annotated[
        int, typer.Option(min=0, max=720, help="Hours the old key keeps working.")
    ] = 24,
) -> None:
    """A new key replacing KEY_ID; the old one works for --grace-hours more."""

    async def work(session: AsyncSession, _home: str, settings: Settings) -> dict[str, str]:
        old = await tenancy.key_by_id(session, key_id)
        issued = await tenancy.roll_key(
            session, _pepper(settings), old, timedelta(hours=grace_hours)
        )
        await session.refresh(old)
        project = await session.get_one(Project, old.project_id)
        await tenancy.record(
            session,
            project.platform_id,
            "key.roll",
            target=old.id,
            detail={**CLI_AUDIT, "new_key_id": issued.key.id, "grace_hours": grace_hours},
        )
        expires = old.expires_at.isoformat() if old.expires_at else ""
        return {"key_id": issued.key.id, "key": issued.plaintext, "previous_expires_at": expires}

    _print_once(_run(work))


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke KEY_ID at once."""

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> str:
        key = await tenancy.key_by_id(session, key_id)
        await tenancy.revoke_key(session, key)
        project = await session.get_one(Project, key.project_id)
        await tenancy.record(
            session, project.platform_id, "key.revoke", target=key.id, detail=CLI_AUDIT
        )
        return key.display

    console.print(f"revoked {key_id} ({_run(work)})")
