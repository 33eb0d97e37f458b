"""`tollhouse`: the root command and one registration line per command module.

Kept light so `tollhouse --version` and `--help` answer in a fraction of a second: the
modules in `tollhouse.commands` import the application only inside the command that runs.
A new area adds its module there and one `register` line below.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tollhouse.commands import ledger, operations, people, platforms, sandbox, server

app = typer.Typer(
    help="Tollhouse: the front door of paid APIs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold secrets
    rich_markup_mode=None,  # plain help: rendering it with rich costs more than the 0.5 s budget
)


def _version(value: bool) -> None:
    if value:
        from tollhouse import __version__

        typer.echo(f"tollhouse {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Tollhouse: the front door of paid APIs. Settings come from the environment, `.env`
    and TOLLHOUSE_HOME (`tollhouse config` lists them)."""


server.register(app)
people.register(app)
ledger.register(app)
platforms.register(app)
operations.register(app)
sandbox.register(app)


def main() -> None:
    app()
