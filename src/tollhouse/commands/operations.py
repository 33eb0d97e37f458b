"""Operating the service: `config`, `doctor`, `stripe status`, `upstreams`, `products`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollhouse.commands.common import JsonOption, emit, load, progress, run

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tollhouse.config import Settings

stripe_app = typer.Typer(
    rich_markup_mode=None, help="Stripe as this server sees it.", no_args_is_help=True
)
upstreams_app = typer.Typer(
    rich_markup_mode=None, help="Upstreams: the operator's and developers'.", no_args_is_help=True
)


def config(
    env_example: Annotated[
        bool, typer.Option("--env-example", help="Print .env.example (every setting, commented).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Every setting: its source, value (secrets masked) and meaning."""
    from tollhouse import config_docs

    if env_example:
        typer.echo(config_docs.env_example(), nl=False)
        return
    docs = config_docs.describe(load("skip"))
    columns = None if json_output else ("name", "source", "value", "meaning")
    emit([asdict(doc) for doc in docs], as_json=json_output, title="Settings", columns=columns)


@dataclass(frozen=True, slots=True)
class Check:
    area: str
    status: str  # ok | off | problem
    detail: str


async def _reachable(url: str, seconds: float) -> str | None:
    """None when `url` answers (any status), else why not."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=seconds) as client:
            await client.get(url)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


async def _checks(settings: Settings) -> list[Check]:
    from tollhouse.commands.common import database_errors
    from tollhouse.db import migrate as migrations

    checks: list[Check] = []
    url = settings.effective_database_url
    try:
        current = await migrations.current_revision(url)
        head = migrations.head_revision()
        checks.append(
            Check("database", "ok", f"revision {current}")
            if current == head
            else Check("database", "problem", f"at {current}, latest {head}: run tollhouse migrate")
        )
    except database_errors() as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        checks.append(Check("database", "problem", f"DATABASE_URL unreachable: {reason}"))

    if settings.redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            await redis.ping()
            checks.append(Check("redis", "ok", "answers PING"))
        except Exception as exc:  # any failure is the finding
            checks.append(Check("redis", "problem", f"REDIS_URL: {exc}"))
        finally:
            await redis.aclose()
    else:
        checks.append(Check("redis", "off", "REDIS_URL unset: rate limits and events per process"))

    providers = [
        name
        for name, on in (
            ("google", settings.google_api_key),
            ("openrouter", settings.openrouter_api_key),
            ("compatible", settings.llm_base_url),
        )
        if on
    ]
    if settings.llm_base_url:
        why = await _reachable(f"{settings.llm_base_url.rstrip('/')}/models", 3)
        if why:
            checks.append(Check("providers", "problem", f"LLM_BASE_URL unreachable: {why}"))
    if providers:
        checks.append(Check("providers", "ok", ", ".join(providers)))
    else:
        checks.append(
            Check(
                "providers", "off", "no LLM: set OPENROUTER_API_KEY, LLM_BASE_URL or GOOGLE_API_KEY"
            )
        )

    for mode in ("test", "live"):
        key = settings.secret(f"stripe_secret_key_{mode}")
        hook = settings.secret(f"stripe_webhook_secret_{mode}")
        name = f"stripe ({mode})"
        if not key:
            checks.append(Check(name, "off", f"STRIPE_SECRET_KEY_{mode.upper()} unset"))
        elif not hook:
            checks.append(
                Check(
                    name,
                    "problem",
                    f"STRIPE_WEBHOOK_SECRET_{mode.upper()} unset: "
                    "purchases would never be confirmed",
                )
            )
        else:
            checks.append(Check(name, "ok", "keys and webhook secret set"))

    if settings.s3_bucket:
        checks.append(Check("storage", "ok", f"S3 bucket {settings.s3_bucket}"))
    else:
        media = settings.tollhouse_data_dir / "media"
        parent = media if media.exists() else settings.tollhouse_data_dir
        import os

        writable = parent.exists() and os.access(parent, os.W_OK)
        checks.append(
            Check("storage", "ok", f"files in {media}")
            if writable or not parent.exists()
            else Check("storage", "problem", f"{parent} is not writable")
        )

    targets = [(u.name, u.url) for u in settings.upstreams]
    if settings.clockchain_enabled and settings.clockchain_service_url:
        targets.append(("clockchain", f"{settings.clockchain_service_url.rstrip('/')}/health"))
    for name, target in targets:
        why = await _reachable(target, settings.upstream_health_timeout_seconds)
        checks.append(
            Check(f"upstream {name}", "problem", why)
            if why
            else Check(f"upstream {name}", "ok", target)
        )
    if not targets:
        checks.append(Check("upstreams", "off", "no CLOCKCHAIN_SERVICE_URL, no UPSTREAMS"))
    return checks


def doctor(json_output: JsonOption = False) -> None:
    """Check the database, Redis, LLM providers, Stripe, storage and upstreams; exit code 1
    when something is misconfigured."""
    import asyncio

    settings = load("skip")
    with progress("Checking…", as_json=json_output):
        checks = asyncio.run(_checks(settings))
    emit([asdict(c) for c in checks], as_json=json_output, title="tollhouse doctor")
    if any(c.status == "problem" for c in checks):
        raise typer.Exit(1)


@stripe_app.command("status")
def stripe_status(json_output: JsonOption = False) -> None:
    """Per mode: keys, webhook secret, Connect; and the developers' connected accounts."""
    from tollhouse.billing.stripe import connect

    async def work(session: AsyncSession, _home: str, settings: Settings) -> list[dict[str, Any]]:
        connected = await connect.connected_account_counts(session)
        return [
            {
                "mode": mode,
                "secret_key": settings.secret(f"stripe_secret_key_{mode}") is not None,
                "webhook_secret": settings.secret(f"stripe_webhook_secret_{mode}") is not None,
                "connect_client_id": getattr(settings, f"stripe_connect_client_id_{mode}")
                is not None,
                "connected_accounts": connected.get(mode, 0),
            }
            for mode in ("test", "live")
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title="Stripe")


@upstreams_app.command("list")
def upstreams_list(
    project: Annotated[
        str | None, typer.Option(help="A project's routes (/gw); default: the operator's.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The operator's upstreams (UPSTREAMS, the clockchain), or a project's /gw routes."""
    if project is None:
        settings = load("skip")
        rows: list[dict[str, Any]] = [
            {
                "name": u.name,
                "url": u.url,
                "at": f"/api/v1/upstreams/{u.name}/",
                "methods": ",".join(u.methods),
                "cost_key": u.cost_key,
            }
            for u in settings.upstreams
        ]
        if settings.clockchain_enabled and settings.clockchain_service_url:
            rows.append(
                {
                    "name": "clockchain",
                    "url": settings.clockchain_service_url,
                    "at": "/api/v1/clockchain/",
                    "methods": "*",
                    "cost_key": None,
                }
            )
        emit(rows, as_json=json_output, title="Upstreams")
        return
    from tollhouse.upstreams import platform

    async def work(session: AsyncSession, _home: str, _s: Settings) -> list[dict[str, Any]]:
        return [
            platform.UpstreamRouteOut.model_validate(route, from_attributes=True).model_dump(
                mode="json"
            )
            for route in await platform.list_routes(session, project)
        ]

    emit(run(work, needs_secrets=False), as_json=json_output, title=f"Routes of {project}")


def products(json_output: JsonOption = False) -> None:
    """The operator's catalogue: credit packs and subscriptions (BILLING_PRODUCTS)."""
    from tollhouse.billing.gateway.products import Catalogue

    rows = [
        {
            "id": p.id,
            "kind": p.kind,
            "name": p.name,
            "credits": p.credits,
            "price_cents": p.price_cents,
            "currency": p.currency,
            "interval": p.interval,
        }
        for p in Catalogue.from_settings(load("skip")).products
    ]
    emit(rows, as_json=json_output, title="Products")


def register(app: typer.Typer) -> None:
    app.command("config")(config)
    app.command("doctor")(doctor)
    app.command("products")(products)
    app.add_typer(stripe_app, name="stripe")
    app.add_typer(upstreams_app, name="upstreams")
