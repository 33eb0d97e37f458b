"""The Developer API: one router under /console/api/v1, assembled from the area modules."""

from __future__ import annotations

from fastapi import APIRouter

from tollhouse.console import (
    account,
    catalog,
    end_users,
    money,
    origins,
    plan,
    projects,
    stripe,
    upstreams,
)

router = APIRouter(prefix="/console/api/v1")
for area in (account, projects, catalog, end_users, money, stripe, plan, upstreams, origins):
    router.include_router(area.router)
