"""What every command shares: settings that fail in one line, the unit of work, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tollhouse.config import SecretsMode, Settings
    from tollhouse.kit.invalidation import Invalidation

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
CLI_AUDIT = {"via": "cli"}
# On the command's session `info`: its settings and the kit.invalidation.Invalidation made
# on first use (a command that changes nothing cached never imports it).
_INVALIDATION = "tollhouse.commands.invalidation"


def fail(message: str, code: int = 2) -> NoReturn:
    """A short message on stderr and an exit code: 2 for configuration, 1 for a refusal."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load(secrets_mode: SecretsMode = "existing") -> Settings:
    """The settings; a bad one ends the command with one line naming it."""
    from tollhouse.config import ConfigError, load_settings

    try:
        return load_settings(secrets_mode=secrets_mode)
    except ConfigError as exc:
        fail(str(exc))


def database_unreachable(settings: Settings, exc: BaseException) -> NoReturn:
    from sqlalchemy.engine import make_url

    url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    fail(
        f"DATABASE_URL: cannot use {url} ({reason}).\n"
        "Start the database or fix DATABASE_URL (unset, it is SQLite in TOLLHOUSE_HOME)."
    )


def database_errors() -> tuple[type[BaseException], ...]:
    """What a missing, refusing or unknown database raises, whatever the driver."""
    from sqlalchemy.exc import DBAPIError

    return (OSError, DBAPIError)


def migrate_embedded(settings: Settings) -> list[str]:
    """The embedded SQLite database is migrated by whoever opens it first."""
    from tollhouse.db import migrate as migrations

    if not settings.is_embedded_database:
        return []
    try:
        return migrations.upgrade(settings.effective_database_url)
    except database_errors() as exc:
        database_unreachable(settings, exc)


def run(
    work: Callable[[AsyncSession, str, Settings], Awaitable[T]], *, needs_secrets: bool = True
) -> T:
    """Run `work(session, home_project_id, settings)` in one committed unit of work.

    Domain errors end the command with their code and message (exit 1)."""
    settings = load("existing" if needs_secrets else "skip")
    migrate_embedded(settings)
    import asyncio

    from tollhouse.db.engine import Database
    from tollhouse.kit.errors import TollhouseError
    from tollhouse.tenancy.service import ensure_home_project

    async def main() -> T:
        database = Database(settings.effective_database_url)
        # What the command changes that running replicas cache is published on commit.
        published: list[Invalidation] = []
        try:
            async with database.session() as session:
                session.info[_INVALIDATION] = (settings, published)
                # What wiring.home_project_id does, without importing every domain's wiring.
                home = (
                    await ensure_home_project(
                        session, settings.home_platform_name, settings.home_project_name
                    )
                ).id
                return await work(session, home, settings)
        finally:
            for invalidation in published:  # the messages are sent before the command exits
                await invalidation.stop()
            await database.dispose()

    try:
        return asyncio.run(main())
    except TollhouseError as exc:
        fail(f"{exc.code}: {exc.message}", 1)
    except database_errors() as exc:
        database_unreachable(settings, exc)


def forget_key(session: AsyncSession, key_id: str) -> None:
    """A key this command rolls or revokes: once it commits, every running replica drops
    its cached copy (the API's message; with Redis, within a second)."""
    from tollhouse.kit.invalidation import Invalidation

    settings, published = session.info[_INVALIDATION]
    if not published:
        published.append(Invalidation(settings.redis_url, settings.invalidation_channel))
    published[0].on_commit(session, "key", key_id)


@contextmanager
def progress(message: str, *, as_json: bool) -> Iterator[None]:
    """A `rich` spinner on stderr while a long command works (people only: never in JSON
    mode or when stderr is not a terminal)."""
    if as_json or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


def emit_json(value: Any) -> None:
    """One line of JSON (for `jq`, scripts and the README's checked output)."""
    typer.echo(json.dumps(value, default=str))


def emit(
    rows: Sequence[dict[str, Any]],
    *,
    as_json: bool,
    title: str,
    columns: Iterable[str] | None = None,
) -> None:
    """Rows as a `rich` table for people, or as JSON for scripts."""
    if as_json:
        emit_json(list(rows))
        return
    from rich.console import Console
    from rich.table import Table

    names = list(columns or (rows[0].keys() if rows else []))
    table = Table(*names, title=title)
    for row in rows:
        table.add_row(*("" if row.get(n) is None else str(row.get(n)) for n in names))
    Console().print(table if rows else f"{title}: none")


def say(message: str, *, as_json: bool, **data: Any) -> None:
    """A one-line human answer, or its data as JSON."""
    if as_json:
        emit_json(data)
    else:
        typer.echo(message)
