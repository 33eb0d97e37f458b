"""Projects, their API keys, and promotion test → live."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from tollhouse.billing.stripe import connect as stripe_connect
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.catalog import service as catalog
from tollhouse.console.deps import Console, ConsoleDep, ProjectDep, settings_of
from tollhouse.console.schemas import (
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    ProjectCreate,
    ProjectCreated,
    ProjectList,
    ProjectOut,
    ProjectUpdate,
    PromoteResponse,
    RollRequest,
    RollResponse,
)
from tollhouse.identity.caller import DeveloperCaller
from tollhouse.kit.errors import BadRequest
from tollhouse.kit.ssrf import check_public_url
from tollhouse.tenancy import promote as promotion
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.errors import KeyNotFound, ProjectNameTaken
from tollhouse.tenancy.models import ApiKey, Project

router = APIRouter(tags=["console"])


def _created(new: tenancy.NewProject) -> ProjectCreated:
    return ProjectCreated(
        project=ProjectOut.of(new.project),
        publishable_key=new.publishable.plaintext,
        secret_key=new.secret.plaintext,
    )


def _key_detail(*issued: tenancy.IssuedKey) -> dict[str, str]:
    # Displays only: a secret key's display is prefix…last4, never the key.
    return {issued_key.key.kind: issued_key.key.display for issued_key in issued}


@router.get("/projects")
async def list_projects(console: ConsoleDep) -> ProjectList:
    projects = await tenancy.projects_of_platform(console.session, console.platform_id)
    return ProjectList(projects=[ProjectOut.of(project) for project in projects])


@router.post("/projects", status_code=201)
async def create_project(body: ProjectCreate, console: ConsoleDep) -> ProjectCreated:
    new = await tenancy.create_project_with_keys(
        console.session,
        console.pepper,
        console.platform_id,
        name=body.name,
        mode=body.mode,
        type=body.type,
        enable_tax=body.enable_tax,
    )
    await console.audit(
        "project.create",
        new.project.id,
        name=body.name,
        mode=body.mode,
        type=body.type,
        keys=_key_detail(new.publishable, new.secret),
    )
    return _created(new)


@router.get("/projects/{project_id}")
async def get_project(project: ProjectDep) -> ProjectOut:
    return ProjectOut.of(project)


async def _public_jwks_url(body: ProjectUpdate, request: Request, _: DeveloperCaller) -> None:
    """The JWKS URL must be https on a public address (SSRF).

    A dependency so that the DNS lookup runs before the request's transaction starts: on
    SQLite an open transaction holds the write lock.
    """
    if body.end_user_jwks_url is not None:
        allow_private = settings_of(request).private_urls_allowed
        await check_public_url(body.end_user_jwks_url, allow_private=allow_private)


@router.patch("/projects/{project_id}", dependencies=[Depends(_public_jwks_url)])
async def update_project(
    body: ProjectUpdate, project: ProjectDep, console: ConsoleDep
) -> ProjectOut:
    changes = body.changes()
    for field, value in changes.items():
        setattr(project, field, value)
    # The end-user issuer is all or nothing.
    if (project.end_user_issuer is None) != (project.end_user_jwks_url is None):
        raise BadRequest(
            "end_user_issuer and end_user_jwks_url are set together.", code="issuer_incomplete"
        )
    try:
        async with console.session.begin_nested():
            await console.session.flush()
    except IntegrityError as exc:
        raise ProjectNameTaken() from exc
    await console.audit("project.update", project.id, fields=sorted(changes))
    return ProjectOut.of(project)


@router.delete("/projects/{project_id}", status_code=204)
async def delete_project(project: ProjectDep, console: ConsoleDep) -> None:
    # The database cascades to keys, tiers, end users and their usage.
    await console.session.execute(delete(Project).where(Project.id == project.id))
    await console.audit("project.delete", project.id, name=project.name, mode=project.mode)


# --- keys ----------------------------------------------------------------------------------


@router.get("/projects/{project_id}/keys")
async def list_keys(project: ProjectDep, console: ConsoleDep) -> KeyList:
    keys = await tenancy.keys_of_project(console.session, project.id)
    return KeyList(keys=[KeyOut.of(key) for key in keys])


@router.post("/projects/{project_id}/keys", status_code=201)
async def create_key(body: KeyCreate, project: ProjectDep, console: ConsoleDep) -> KeyCreated:
    issued = await tenancy.issue_key(
        console.session, console.pepper, project, body.kind, name=body.name
    )
    await console.audit("key.create", issued.key.id, project_id=project.id, **_key_detail(issued))
    return KeyCreated(key=KeyOut.of(issued.key), plaintext=issued.plaintext)


async def _key_of_project(console: Console, project: Project, key_id: str) -> ApiKey:
    key = await tenancy.key_of_platform(console.session, console.platform_id, key_id)
    if key.project_id != project.id:
        raise KeyNotFound()
    return key


@router.post("/projects/{project_id}/keys/{key_id}/roll", status_code=201)
async def roll_key(
    key_id: str, project: ProjectDep, console: ConsoleDep, body: RollRequest | None = None
) -> RollResponse:
    grace_hours = (body or RollRequest()).grace_hours
    old = await _key_of_project(console, project, key_id)
    issued = await tenancy.roll_key(
        console.session, console.pepper, old, timedelta(hours=grace_hours)
    )
    await console.session.refresh(old)
    console.forget_key(old.id)
    await console.audit(
        "key.roll",
        old.id,
        project_id=project.id,
        new_key_id=issued.key.id,
        grace_hours=grace_hours,
        **_key_detail(issued),
    )
    return RollResponse(
        key=KeyOut.of(issued.key), plaintext=issued.plaintext, previous=KeyOut.of(old)
    )


@router.post("/projects/{project_id}/keys/{key_id}/revoke")
async def revoke_key(key_id: str, project: ProjectDep, console: ConsoleDep) -> KeyOut:
    key = await _key_of_project(console, project, key_id)
    await tenancy.revoke_key(console.session, key)
    console.forget_key(key.id)
    await console.session.refresh(key)
    await console.audit("key.revoke", key.id, project_id=project.id, display=key.display)
    return KeyOut.of(key)


# --- promote -------------------------------------------------------------------------------


@router.post("/projects/{project_id}/promote", status_code=201)
async def promote(project: ProjectDep, console: ConsoleDep, stripe: StripeDep) -> PromoteResponse:
    result = await promotion.promote(
        console.session,
        console.pepper,
        console.platform_id,
        project.id,
        copy_catalog=catalog.copy_tiers,
        live_payments_ready=stripe_connect.live_payments_ready(stripe),
    )
    live = result.live
    await console.audit(
        "project.promote",
        project.id,
        live_project_id=live.project.id,
        tiers_copied=result.tiers_copied,
        keys=_key_detail(live.publishable, live.secret),
    )
    return PromoteResponse(**_created(live).model_dump(), tiers_copied=result.tiers_copied)
