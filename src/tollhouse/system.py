"""Open system routes: /, /health, /health/live, /health/ready, /health/deep, /metrics,
/api/v1/status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tollhouse import __version__
from tollhouse.db.session import database
from tollhouse.generation.presets import DEFAULT_PRESET
from tollhouse.identity.caller import GatewayCaller, identity_context
from tollhouse.kit.drain import Drain
from tollhouse.kit.errors import ServiceUnavailable
from tollhouse.kit.metrics import HttpMetrics
from tollhouse.upstreams import routes as upstreams

router = APIRouter(tags=["system"])


@router.get("/")
async def root() -> dict[str, str]:
    return {"name": "Tollhouse", "version": __version__, "docs": "/docs", "health": "/health"}


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness: answers without touching the database."""
    return {
        "status": "healthy",
        "version": __version__,
        "database": True,
        "database_backend": database(request).backend,
        "providers": _providers(request),
    }


@router.get("/health/live")
async def live() -> dict[str, str]:
    """Liveness for an orchestrator: the process answers (restart it when it does not)."""
    return {"status": "alive"}


class NotReady(ServiceUnavailable):
    code = "not_ready"


@router.get("/health/ready")
async def ready(request: Request) -> dict[str, Any]:
    """Readiness for an orchestrator or load balancer: route new requests here only while
    this is 200. 503 (in the error envelope) while draining or when the database is away."""
    drain = request.app.state.drain
    assert isinstance(drain, Drain)
    if drain.draining:
        raise NotReady("This replica is draining.", detail={"draining": True, "database": None})
    db = database(request)
    if not await db.ping(identity_context(request).settings.db_health_timeout_seconds):
        raise NotReady(
            "The database does not answer.", detail={"draining": False, "database": False}
        )
    return {"status": "ready", "version": __version__, "database_backend": db.backend}


def _providers(request: Request) -> dict[str, bool]:
    """Which LLM providers scene generation can use (configuration only, no I/O)."""
    settings = identity_context(request).settings
    return {
        "google": settings.google_api_key is not None,
        "openrouter": settings.openrouter_api_key is not None,
        "compatible": settings.llm_base_url is not None,
    }


@router.get("/health/deep")
async def deep_health(request: Request) -> JSONResponse:
    """Readiness: the database must answer `SELECT 1` within the configured timeout.
    Configured upstreams are reported (and make the status "degraded"), not required."""
    db = database(request)
    reachable = await db.ping(identity_context(request).settings.db_health_timeout_seconds)
    checked = await upstreams.health(request)
    body = {
        "status": "healthy" if reachable and all(checked.values()) else "degraded",
        "version": __version__,
        "database": reachable,
        "database_backend": db.backend,
        "providers": _providers(request),
        **({"upstreams": checked} if checked else {}),
    }
    return JSONResponse(body, status_code=200 if reachable else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    assert isinstance(registry, HttpMetrics)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)


def _generation_status(request: Request) -> dict[str, Any]:
    """flash-contract §1.2: the provider and models the default preset's calls really go to
    (after LLM_MODEL / LLM_IMAGE_MODEL and provider fallback), not only what it asks for."""
    generation = getattr(request.app.state, "generation", None)
    if generation is None:  # the billing role generates nothing
        return {}
    preset = generation.presets[DEFAULT_PRESET]
    router = generation.router
    creative = router.route(preset.text_model, preset.provider)
    judge = router.route(preset.judge_model or preset.text_model, preset.provider)
    image = router.route(preset.image_model, preset.provider, "image")
    return {
        "primary_provider": creative[0] if creative else None,
        "models": {
            "judge": judge[1] if judge else preset.judge_model or preset.text_model,
            "creative": creative[1] if creative else preset.text_model,
            "image": image[1] if image else preset.image_model,
        },
    }


@router.get("/api/v1/status")
async def status(caller: GatewayCaller, request: Request) -> dict[str, Any]:
    """The API version and how this request's credentials were understood."""
    settings = identity_context(request).settings
    return {
        "api_version": "v1",
        "app_version": __version__,
        "environment": settings.tollhouse_env,
        **_generation_status(request),
        "caller": {
            "kind": caller.kind.value,
            "project_id": caller.project_id,
            "user_id": str(caller.user.id) if caller.user else None,
            "metered": caller.metered,
        },
    }
