"""A project's allowed origins (`/projects/{id}/origins`): where its browsers call from and
where its hosted sign-in pages may send people back to with a token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tollhouse.console.deps import ConsoleDep, ProjectDep
from tollhouse.tenancy import origins

router = APIRouter(tags=["console"])


class OriginAdd(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    origin: str = Field(min_length=1, max_length=300)


class OriginList(BaseModel):
    origins: list[str]


@router.get("/projects/{project_id}/origins")
async def list_origins(project: ProjectDep, console: ConsoleDep) -> OriginList:
    return OriginList(origins=list(await origins.origins_of(console.session, project.id)))


@router.post("/projects/{project_id}/origins", status_code=201)
async def add_origin(body: OriginAdd, project: ProjectDep, console: ConsoleDep) -> OriginList:
    added = await origins.allow(console.session, project.id, body.origin)
    await console.audit("origin.allow", project.id, origin=added)
    return OriginList(origins=list(await origins.origins_of(console.session, project.id)))


@router.delete("/projects/{project_id}/origins", status_code=204)
async def remove_origin(
    project: ProjectDep,
    console: ConsoleDep,
    origin: Annotated[str, Query(min_length=1, max_length=300)],
) -> None:
    await origins.disallow(console.session, project.id, origin)
    await console.audit("origin.disallow", project.id, origin=origins.normalise(origin))
