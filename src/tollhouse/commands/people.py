"""Users of the home project (and of any project), their tokens, the dev secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollhouse.commands.common import JsonOption, emit, emit_json, fail, load, run

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tollhouse.config import Settings
    from tollhouse.identity.service import TokenPair

users_app = typer.Typer(
    rich_markup_mode=None, help="Users of the home project (or a platform project's end users)."
)
tokens_app = typer.Typer(
    rich_markup_mode=None, help="Access and refresh tokens.", no_args_is_help=True
)
secrets_app = typer.Typer(
    rich_markup_mode=None, help="Development secrets kept in TOLLHOUSE_HOME.", no_args_is_help=True
)


@users_app.command("resolve")
def users_resolve(
    external_id: str,
    email: Annotated[str | None, typer.Option(help="Email to store.")] = None,
    display_name: Annotated[str | None, typer.Option(help="Name to show.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Find or create the user with EXTERNAL_ID; prints its id (always JSON)."""
    from tollhouse import wiring
    from tollhouse.identity import service as identity

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

    user_id, created = run(work)
    emit_json({"user_id": user_id, "created": created})


@users_app.command("list")
def users_list(
    project: Annotated[
        str | None, typer.Option(help="A platform project's id (its customers); default: home.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    json_output: JsonOption = False,
) -> None:
    """Users, newest first: the home project's, or a project's end users (customers)."""
    from tollhouse.identity import service as identity

    async def work(session: AsyncSession, home: str, _s: Settings) -> list[dict[str, Any]]:
        _total, users = await identity.users_of_project(
            session, project or home, limit=limit, offset=offset
        )
        return [
            {
                "id": str(u.id),
                "external_id": u.external_id,
                "email": u.email,
                "plan": u.plan,
                "active": u.is_active,
                "created_at": u.created_at.isoformat(timespec="seconds"),
            }
            for u in users
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title="Users")


@tokens_app.command("issue")
def tokens_issue(
    user: Annotated[str, typer.Argument(help="User id or external id.")],
    json_output: JsonOption = False,
) -> None:
    """Print a fresh access + refresh token pair for USER (always JSON)."""
    from tollhouse.identity import service as identity

    async def work(session: AsyncSession, home: str, settings: Settings) -> TokenPair:
        found = await identity.find_user(session, home, user)
        return await identity.sign_in(
            session, found, identity.TokenSettings.from_settings(settings)
        )

    pair = run(work)
    emit_json(
        {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "token_type": pair.token_type,
            "expires_in": pair.expires_in,
        }
    )


@secrets_app.command("show")
def secrets_show(
    name: Annotated[
        str | None, typer.Argument(help="Print only this one (e.g. FLASH_SERVICE_KEY).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The development secrets the server uses (from the environment, else TOLLHOUSE_HOME)."""
    from tollhouse.config import GENERATED_SECRETS

    settings = load("existing")  # says so when the home holds none, never makes new ones
    if settings.is_production:
        fail("Production secrets come from the environment; nothing to show.")
    effective = {key.upper(): settings.secret(key) or "" for key in GENERATED_SECRETS}
    if name is not None:
        if name.upper() not in effective:
            fail(f"No generated secret named {name}: one of {', '.join(effective)}.", 1)
        typer.echo(effective[name.upper()])
        return
    rows = [{"name": key, "value": value} for key, value in effective.items()]
    emit(rows, as_json=json_output, title=f"Secrets of {settings.tollhouse_data_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users", no_args_is_help=True)
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(secrets_app, name="secrets")
