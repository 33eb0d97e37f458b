"""`tollhouse stripe-sandbox`: the sandbox as a process of its own.

For when the server should not start it itself (a split gateway + billing deployment, more
than one worker, another machine): it serves on --port, forwards webhooks of both modes to
--forward-to (as `stripe listen --forward-to` does) and prints the settings that point a
server at it. `STRIPE_SANDBOX=1 make run` is the one-command way.
"""

from __future__ import annotations

import json

import typer


def run(port: int, forward_to: str) -> None:
    """Serve the sandbox on 127.0.0.1:`port`; webhooks of both modes go to `forward_to`."""
    import httpx
    import uvicorn

    from tollhouse.config import ConfigError, Settings
    from tollhouse.stripe_sandbox import setup
    from tollhouse.stripe_sandbox.api import sandbox_app
    from tollhouse.stripe_sandbox.state import Sandbox
    from tollhouse.stripe_sandbox.webhooks import webhook_endpoint

    settings = Settings()
    try:
        setup.refuse_in_production(settings)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    base_url = f"http://127.0.0.1:{port}"
    whsec = setup.webhook_secrets()
    sandbox = Sandbox(base_url=base_url)
    values = setup.server_settings(settings, base_url, whsec)
    setup.seed(sandbox, values["billing_products"])
    for mode, secret in whsec.items():
        webhook_endpoint(sandbox, forward_to, secret, livemode=mode == "live")
    typer.echo(f"Stripe sandbox on {base_url}, webhooks to {forward_to}. Start the server with:")
    for name, value in values.items():
        shown = getattr(value, "get_secret_value", lambda v=value: v)()
        if name == "billing_products":
            shown = json.dumps(value.model_dump(exclude_none=True), separators=(",", ":"))
        typer.echo(f"export {name.upper()}='{shown}'")
    client = httpx.AsyncClient(timeout=30.0)
    uvicorn.run(sandbox_app(sandbox, client), host="127.0.0.1", port=port, log_level="warning")
