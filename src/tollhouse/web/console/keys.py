"""A project's page: its publishable and secret keys (a new secret shown once), roll with a
grace period, revoke, when each key was last used, and the allowed origins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tollhouse.console import origins as origins_api
from tollhouse.console import projects as api
from tollhouse.console.schemas import KeyCreate, RollRequest
from tollhouse.kit.errors import TollhouseError
from tollhouse.tenancy.models import Project
from tollhouse.web.console.common import (
    ConsolePage,
    ConsolePageDep,
    paged,
    project_of,
    refusal,
    show_project,
)
from tollhouse.web.forms import parse_body, parse_form
from tollhouse.web.hosted.forms import EmptyForm

router = APIRouter(include_in_schema=False)


async def project_page(
    page: ConsolePage, project: Project, *, status: int = 200, **context: Any
) -> HTMLResponse:
    """The project with its keys and origins; `issued` ({kind: plaintext}) is shown once."""
    keys, keys_page = paged(page.request, (await api.list_keys(project, page.console)).keys)
    allowed = (await origins_api.list_origins(project, page.console)).origins
    context.setdefault("issued", {})
    return await show_project(
        page,
        project,
        "project",
        status=status,
        keys=keys,
        keys_page=keys_page,
        origins=allowed,
        base_url=str(page.request.base_url).rstrip("/"),
        grace_hours=RollRequest().grace_hours,
        **context,
    )


async def _refused(page: ConsolePage, project_id: str, exc: TollhouseError) -> HTMLResponse:
    failed = await refusal(page, exc)
    return await project_page(page, await project_of(page, project_id), **failed)


@router.post("/console/projects/{project_id}/keys")
async def create_key(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, KeyCreate)
        created = await api.create_key(body, project, page.console)
    except TollhouseError as exc:
        return await _refused(page, project_id, exc)
    return await project_page(
        page, project, status=201, issued={created.key.kind: created.plaintext}
    )


@router.post("/console/projects/{project_id}/keys/{key_id}/roll")
async def roll_key(project_id: str, key_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, RollRequest)
        rolled = await api.roll_key(key_id[:40], project, page.console, body)
    except TollhouseError as exc:
        return await _refused(page, project_id, exc)
    hours = body.grace_hours
    return await project_page(
        page,
        project,
        status=201,
        issued={rolled.key.kind: rolled.plaintext},
        notice=f"Key rolled: the old one keeps working for {hours} hour(s)."
        if hours
        else "Key rolled: the old one stopped working now.",
    )


@router.post("/console/projects/{project_id}/keys/{key_id}/revoke")
async def revoke_key(project_id: str, key_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        await parse_form(page.request, EmptyForm)
        revoked = await api.revoke_key(key_id[:40], project, page.console)
    except TollhouseError as exc:
        return await _refused(page, project_id, exc)
    return await project_page(page, project, notice=f"Key {revoked.display} revoked.")


@router.post("/console/projects/{project_id}/origins")
async def add_origin(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, origins_api.OriginAdd)
        await origins_api.add_origin(body, project, page.console)
    except TollhouseError as exc:
        return await _refused(page, project_id, exc)
    return await project_page(page, project, notice=f"Origin {body.origin} allowed.")


@router.post("/console/projects/{project_id}/origins/remove")
async def remove_origin(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    try:
        body = await parse_body(page.request, origins_api.OriginAdd)
        await origins_api.remove_origin(project, page.console, body.origin)
    except TollhouseError as exc:
        return await _refused(page, project_id, exc)
    return await project_page(page, project, notice=f"Origin {body.origin} removed.")
