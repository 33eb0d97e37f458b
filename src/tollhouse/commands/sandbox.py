"""`tollhouse stripe-sandbox`: the local Stripe stand-in as a process of its own."""

from __future__ import annotations

from typing import Annotated

import typer


def stripe_sandbox(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 12111,
    forward_to: Annotated[
        str, typer.Option(help="Where webhooks go: the server's /webhook/stripe.")
    ] = "http://127.0.0.1:8000/webhook/stripe",
) -> None:
    """A local stand-in for Stripe (development only): API, Checkout, portal, Connect."""
    from tollhouse.stripe_sandbox import command

    command.run(port=port, forward_to=forward_to)


def register(app: typer.Typer) -> None:
    app.command("stripe-sandbox")(stripe_sandbox)
