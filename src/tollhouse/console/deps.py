"""What every Developer API route needs: the developer's scope, the session, the pepper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.config import Settings
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import DeveloperCaller, IdentityContext, identity_context
from tollhouse.metering.meter import Meter, meter_of
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project

MAX_PAGE = 200


def settings_of(request: Request) -> Settings:
    return identity_context(request).settings


def pepper_of(request: Request) -> str:
    return identity_context(request).pepper


@dataclass(frozen=True, slots=True)
class Console:
    """A signed-in developer's request: every query goes through `platform_id`."""

    platform_id: str
    developer_id: str
    session: AsyncSession
    pepper: str
    settings: Settings
    identity: IdentityContext
    # The app's quota meter: usage charts add its counts not yet flushed to the database.
    meter: Meter | None = None

    def forget_key(self, key_id: str) -> None:
        """No process trusts a rolled or revoked key once this request commits."""
        self.identity.forget_key(self.session, key_id)

    async def audit(self, action: str, target: str | None = None, **detail: Any) -> None:
        """Log the action; callers pass ids and displays, never a secret."""
        await tenancy.record(
            self.session,
            self.platform_id,
            action,
            developer_id=self.developer_id,
            target=target,
            detail=detail or None,
        )

    async def project(self, project_id: str) -> Project:
        return await tenancy.project_of_platform(self.session, self.platform_id, project_id)


async def _console(request: Request, caller: DeveloperCaller, session: SessionDep) -> Console:
    assert caller.platform_id is not None
    assert caller.developer_id is not None
    return Console(
        platform_id=caller.platform_id,
        developer_id=caller.developer_id,
        session=session,
        pepper=pepper_of(request),
        settings=settings_of(request),
        identity=identity_context(request),
        meter=meter_of(request),
    )


ConsoleDep = Annotated[Console, Depends(_console)]


async def _project(project_id: str, console: ConsoleDep) -> Project:
    return await console.project(project_id)


# The path's project, or 404 when it belongs to another platform.
ProjectDep = Annotated[Project, Depends(_project)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
