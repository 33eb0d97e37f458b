"""`GET /admin/api/platforms`: the operator's cross-platform totals (contract §1.6) as JSON,
behind the admin key (the original's admin dashboard had no authentication in code)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tollhouse.billing import operator
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import AdminCaller, identity_context

router = APIRouter(tags=["operator"])


@router.get("/admin/api/platforms")
async def platforms(
    caller: AdminCaller,
    request: Request,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    settings = identity_context(request).settings
    return await operator.overview(session, settings, limit=limit, offset=offset)
