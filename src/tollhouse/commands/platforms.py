"""Developer platforms, projects, keys, tiers and products, the audit log (the Developer
API's operator mirror)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollhouse.commands.common import (
    CLI_AUDIT,
    JsonOption,
    emit,
    emit_json,
    fail,
    forget_key,
    run,
    say,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tollhouse.config import Settings

platform_app = typer.Typer(rich_markup_mode=None, help="Developer platforms.", no_args_is_help=True)
projects_app = typer.Typer(
    rich_markup_mode=None, help="Projects of a platform.", no_args_is_help=True
)
keys_app = typer.Typer(rich_markup_mode=None, help="API keys of projects.", no_args_is_help=True)
tiers_app = typer.Typer(
    rich_markup_mode=None,
    help="Tiers (subscriptions) and products of projects.",
    no_args_is_help=True,
)
operators_app = typer.Typer(
    rich_markup_mode=None,
    help="Operator accounts: console sign-ins that may open the operator pages.",
    no_args_is_help=True,
)
ProjectOption = Annotated[str, typer.Option("--project", help="The project's id (prj_…).")]


def _pepper(settings: Settings) -> str:
    return settings.secret("tollhouse_secret_pepper") or ""


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _print_once(values: dict[str, str]) -> None:
    """Plaintext secrets, printed once as JSON; they are not stored anywhere."""
    emit_json(values)
    typer.secho("Keep these now: secrets are shown only once.", fg=typer.colors.YELLOW, err=True)


@platform_app.command("create")
def platform_create(
    email: Annotated[str, typer.Option(help="The developer's email (their login).")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="At least 10 characters.")
    ],
    json_output: JsonOption = False,
) -> None:
    """A developer account and its platform; prints the platform id and an access token."""
    from tollhouse.tenancy import developers
    from tollhouse.tenancy import service as tenancy

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

    _print_once(run(work))


@projects_app.command("create")
def projects_create(
    platform_id: str,
    name: str,
    type: Annotated[str, typer.Option("--type", help="saas, store or membership.")] = "saas",
    mode: Annotated[str, typer.Option(help="test or live.")] = "test",
    json_output: JsonOption = False,
) -> None:
    """A project with its first publishable and secret key (printed once)."""
    if type not in ("saas", "store", "membership") or mode not in ("test", "live"):
        fail("--type is saas|store|membership and --mode is test|live.")
    from tollhouse.kit.errors import NotFound
    from tollhouse.tenancy import service as tenancy
    from tollhouse.tenancy.models import Platform

    async def work(session: AsyncSession, _home: str, settings: Settings) -> dict[str, str]:
        if await session.get(Platform, platform_id) is None:
            raise NotFound(f"No platform {platform_id}.")
        new = await tenancy.create_project_with_keys(
            session,
            _pepper(settings),
            platform_id,
            name=name,
            mode="live" if mode == "live" else "test",
            type=type,
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

    _print_once(run(work))


@projects_app.command("list")
def projects_list(
    platform: Annotated[str | None, typer.Option(help="Only this platform's (plt_…).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Projects, by platform and name."""
    from tollhouse.tenancy import service as tenancy

    async def work(session: AsyncSession, _home: str, _s: Settings) -> list[dict[str, Any]]:
        projects = (
            await tenancy.projects_of_platform(session, platform)
            if platform
            else await tenancy.all_projects(session)
        )
        return [
            {
                "id": p.id,
                "platform_id": p.platform_id,
                "name": p.name,
                "mode": p.mode,
                "type": p.type,
                "created_at": _when(p.created_at),
            }
            for p in projects
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title="Projects")


@keys_app.command("list")
def keys_list(project: ProjectOption, json_output: JsonOption = False) -> None:
    """A project's keys (displays only: secrets are never stored), with when each was used."""
    from tollhouse.tenancy import service as tenancy

    async def work(session: AsyncSession, _home: str, _s: Settings) -> list[dict[str, Any]]:
        return [
            {
                "id": k.id,
                "kind": k.kind,
                "display": k.display,
                "created_at": _when(k.created_at),
                "last_used_at": _when(k.last_used_at),
                "expires_at": _when(k.expires_at),
                "revoked_at": _when(k.revoked_at),
            }
            for k in await tenancy.keys_of_project(session, project)
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title=f"Keys of {project}")


@keys_app.command("roll")
def keys_roll(
    key_id: str,
    grace_hours: Annotated[
        int, typer.Option(min=0, max=720, help="Hours the old key keeps working.")
    ] = 24,
    json_output: JsonOption = False,
) -> None:
    """A new key replacing KEY_ID; the old one works for --grace-hours more."""
    from datetime import timedelta

    from tollhouse.tenancy import service as tenancy
    from tollhouse.tenancy.models import Project

    async def work(session: AsyncSession, _home: str, settings: Settings) -> dict[str, str]:
        old = await tenancy.key_by_id(session, key_id)
        issued = await tenancy.roll_key(
            session, _pepper(settings), old, timedelta(hours=grace_hours)
        )
        forget_key(session, old.id)  # its grace end, as the console's roll does
        await session.refresh(old)
        project = await session.get_one(Project, old.project_id)
        await tenancy.record(
            session,
            project.platform_id,
            "key.roll",
            target=old.id,
            detail={**CLI_AUDIT, "new_key_id": issued.key.id, "grace_hours": grace_hours},
        )
        return {
            "key_id": issued.key.id,
            "key": issued.plaintext,
            "previous_expires_at": _when(old.expires_at) or "",
        }

    _print_once(run(work))


@keys_app.command("revoke")
def keys_revoke(key_id: str, json_output: JsonOption = False) -> None:
    """Revoke KEY_ID at once."""
    from tollhouse.tenancy import service as tenancy
    from tollhouse.tenancy.models import Project

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> str:
        key = await tenancy.key_by_id(session, key_id)
        await tenancy.revoke_key(session, key)
        forget_key(session, key.id)
        project = await session.get_one(Project, key.project_id)
        await tenancy.record(
            session, project.platform_id, "key.revoke", target=key.id, detail=CLI_AUDIT
        )
        return key.display

    display = run(work, needs_secrets=False)
    say(f"revoked {key_id} ({display})", as_json=json_output, revoked=key_id, display=display)


@tiers_app.command("list")
def tiers_list(project: ProjectOption, json_output: JsonOption = False) -> None:
    """A project's tiers: subscriptions (with their usage limits) and one-off products."""
    from tollhouse.catalog import service as catalog

    async def work(session: AsyncSession, _home: str, _s: Settings) -> list[dict[str, Any]]:
        return [
            {
                "slug": t.slug,
                "name": t.display_name,
                "billing": t.billing_mode,
                "price_cents": t.price_cents,
                "currency": t.currency,
                "limit": "unlimited" if t.limit is None else t.limit,
                "period": t.period,
            }
            for t in await catalog.tiers_of_project(session, project)
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title=f"Tiers of {project}")


def audit_log(
    platform: Annotated[str | None, typer.Option(help="Only this platform's (plt_…).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_output: JsonOption = False,
) -> None:
    """What developers (and this CLI) did, newest first."""
    from tollhouse.tenancy import service as tenancy

    async def work(session: AsyncSession, _home: str, _s: Settings) -> list[dict[str, Any]]:
        _total, entries = await tenancy.audit_entries(session, platform, limit=limit, offset=offset)
        return [
            {
                "id": e.id,
                "at": _when(e.created_at),
                "platform_id": e.platform_id,
                "developer_id": e.developer_id,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in entries
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title="Audit log")


@operators_app.command("add")
def operators_add(
    email: str,
    password: Annotated[
        str | None,
        typer.Option(
            help="Creates the account when EMAIL has none (at least 10 characters); "
            "an existing account keeps its password.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Make EMAIL's console account an operator (creating it with --password if needed); it
    signs in at /console/signin and opens /console/operator."""
    from tollhouse.tenancy import developers
    from tollhouse.tenancy import service as tenancy

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> dict[str, Any]:
        developer = await developers.developer_by_email(session, email)
        created = developer is None
        if developer is None:
            if password is None:
                fail(f"{email} has no console account: pass --password to create one.", 2)
            developer = await developers.sign_up(session, email, password)
        await developers.set_operator(session, developer, True)
        await tenancy.record(
            session,
            developer.platform_id,
            "operator.add",
            developer_id=developer.id,
            detail={**CLI_AUDIT, "created": created},
        )
        return {"email": developer.email, "developer_id": developer.id, "created": created}

    emit([run(work)], as_json=json_output, title="Operator added")


@operators_app.command("remove")
def operators_remove(email: str, json_output: JsonOption = False) -> None:
    """EMAIL's account stays a developer account, without the operator pages."""
    from tollhouse.tenancy import developers
    from tollhouse.tenancy import service as tenancy

    async def work(session: AsyncSession, _home: str, _settings: Settings) -> dict[str, Any]:
        developer = await developers.developer_by_email(session, email)
        if developer is None:
            fail(f"{email} has no console account.", 1)
        await developers.set_operator(session, developer, False)
        await tenancy.record(
            session,
            developer.platform_id,
            "operator.remove",
            developer_id=developer.id,
            detail=CLI_AUDIT,
        )
        return {"email": developer.email, "operator": False}

    emit([run(work)], as_json=json_output, title="Operator removed")


@operators_app.command("list")
def operators_list(json_output: JsonOption = False) -> None:
    """Every operator account."""
    from tollhouse.tenancy import developers

    async def work(session: AsyncSession, _home: str, _s: Settings) -> list[dict[str, Any]]:
        return [
            {"email": d.email, "developer_id": d.id, "last_login_at": _when(d.last_login_at)}
            for d in await developers.operators(session)
        ]

    emit(run(work), as_json=json_output, title="Operators")


def register(app: typer.Typer) -> None:
    app.add_typer(operators_app, name="operators")
    app.add_typer(platform_app, name="platform")
    app.add_typer(projects_app, name="projects")
    app.add_typer(keys_app, name="keys")
    app.add_typer(tiers_app, name="tiers")
    app.command("audit")(audit_log)
