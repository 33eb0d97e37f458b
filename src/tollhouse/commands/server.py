"""`tollhouse serve` and `tollhouse migrate`."""

from __future__ import annotations

import errno
import math
import os
import socket
from typing import Annotated, Any, Literal

import typer

from tollhouse.commands.common import (
    JsonOption,
    database_errors,
    database_unreachable,
    emit_json,
    fail,
    load,
    migrate_embedded,
    progress,
)

# How long a replica keeps an idle keep-alive connection open: longer than any load
# balancer in front keeps its idle upstream connections (`tollhouse.cluster`'s and
# deploy/nginx.conf's `keepalive_timeout`), so the balancer closes them, never the replica.
# The other way round (uvicorn's default is 5 s) a request the balancer sends as the replica
# closes the connection fails with a 502, and a POST is not retried on another replica.
KEEP_ALIVE_SECONDS = 75

# `tollhouse.app.Role`, spelled here so `--help` does not import the application.
Role = Literal["all", "gateway", "billing"]


def check_port_free(host: str, port: int) -> None:
    """Refuse at once, in one line, when another process holds the port (before any work)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(
                    f"--port {port}: {host}:{port} is already in use (another server?). "
                    "Stop it or pass another --port."
                )
            fail(f"--host {host}: cannot listen there ({exc.strerror}). Pass another --host.")


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    role: Annotated[
        Role,
        typer.Option(
            help="all: everything, background jobs too (billing in-process unless "
            "BILLING_SERVICE_URL); gateway: the API without background jobs (JOB_QUEUE=redis, "
            "run by `tollhouse worker`); billing: the billing service alone."
        ),
    ] = "all",
) -> None:
    """Serve the API. The embedded SQLite database is migrated automatically."""
    check_port_free(host, port)
    settings = load("create")
    applied = migrate_embedded(settings)
    from tollhouse import __version__
    from tollhouse.app import ROLE_ENV, create_app
    from tollhouse.config import ConfigError
    from tollhouse.db import migrate as migrations

    if not settings.is_embedded_database:
        try:
            current = migrations.is_up_to_date(settings.effective_database_url)
        except database_errors() as exc:
            database_unreachable(settings, exc)
        if not current:
            fail("The database is not at the latest migration: run `tollhouse migrate`.")
    # The app factory runs in uvicorn (in each worker): it reads the role from the environment.
    os.environ[ROLE_ENV] = role
    try:
        app = create_app(settings, role)  # validates the whole configuration up front
    except ConfigError as exc:
        fail(str(exc))
    import uvicorn

    if applied:
        typer.echo(f"Applied migrations: {', '.join(applied)}")
    backend = "SQLite" if settings.is_embedded_database else "PostgreSQL"
    typer.echo(
        f"Tollhouse {__version__} on http://{host}:{port} "
        f"({backend}, {settings.tollhouse_env}, role {role}, home {settings.tollhouse_data_dir})"
    )
    options: dict[str, Any] = {
        "access_log": False,
        "log_config": None,
        "proxy_headers": True,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # SIGTERM: stop accepting, let in-flight requests finish (readiness turns false).
        "timeout_graceful_shutdown": math.ceil(settings.drain_timeout_seconds),
    }
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **options)
        return
    from tollhouse import serving

    # Each worker its own SO_REUSEPORT socket, so the kernel splits connections (serving.py).
    serving.run(host, port, workers, **options)


def worker() -> None:
    """Run background jobs (generation runs, sweepers, purges) from the shared queue
    (JOB_QUEUE=redis); any number of workers may run. Serves no HTTP."""
    settings = load("create")
    if settings.job_queue != "redis" or not settings.redis_url:
        fail(
            "tollhouse worker takes jobs from a shared queue: set JOB_QUEUE=redis and REDIS_URL "
            "(with the default JOB_QUEUE=memory, `tollhouse serve` runs its own jobs)."
        )
    from tollhouse import worker as jobs_worker
    from tollhouse.config import ConfigError
    from tollhouse.db import migrate as migrations

    try:
        current = migrations.is_up_to_date(settings.effective_database_url)
    except database_errors() as exc:
        database_unreachable(settings, exc)
    if not current:
        fail("The database is not at the latest migration: run `tollhouse migrate`.")
    typer.echo(f"Tollhouse worker on queue {settings.job_queue_name} (SAQ on REDIS_URL)")
    try:
        jobs_worker.run(settings)
    except ConfigError as exc:
        fail(str(exc))


def migrate(json_output: JsonOption = False) -> None:
    """Bring the database to the latest schema and say which migrations ran."""
    settings = load("skip")
    from tollhouse.db import migrate as migrations

    try:
        with progress("Migrating…", as_json=json_output):
            applied = migrations.upgrade(settings.effective_database_url)
    except database_errors() as exc:
        database_unreachable(settings, exc)
    head = migrations.head_revision()
    if json_output:
        emit_json({"applied": applied, "revision": head})
        return
    for step in applied:
        typer.echo(f"applied {step}")
    typer.echo(f"Database at revision {head}" + ("" if applied else " (nothing to apply)"))


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.command()(migrate)
