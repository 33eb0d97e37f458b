"""The platform's own subscription to the operator's plan: checkout, portal, status.

Rules in `billing.platform_plan`; 409 `plan_not_offered` while PLATFORM_PRICE_ID is unset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from tollhouse.billing import platform_plan
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.console.deps import ConsoleDep

router = APIRouter(prefix="/plan", tags=["console"])


class PortalBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    return_url: str | None = Field(None, alias="returnUrl", max_length=1000)


class PlanOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    status: str
    offered: bool
    trial_ends_at: datetime | None = Field(alias="trialEndsAt")
    current_period_end: datetime | None = Field(alias="currentPeriodEnd")
    live_end_user_count: int = Field(alias="liveEndUserCount")
    included_users: int = Field(alias="includedUsers")
    overage_rate: float = Field(alias="overageRate", description="US$ per end user above")
    estimated_overage: float = Field(alias="estimatedOverage", description="US$")

    @classmethod
    def of(cls, found: platform_plan.PlanOverview) -> PlanOut:
        return cls(
            status=found.status,
            offered=found.offered,
            trial_ends_at=found.trial_ends_at,
            current_period_end=found.current_period_end,
            live_end_user_count=found.live_end_users,
            included_users=found.included_users,
            overage_rate=found.overage_cents_per_user / 100,
            estimated_overage=round(found.estimated_overage_cents / 100, 2),
        )


@router.post("/checkout")
async def plan_checkout(request: Request, console: ConsoleDep, stripe: StripeDep) -> dict[str, str]:
    url = await platform_plan.start_checkout(
        console.session,
        stripe,
        console.settings,
        platform_id=console.platform_id,
        developer_id=console.developer_id,
        base_url=str(request.base_url),
    )
    await console.audit("plan.checkout")
    return {"url": url}


@router.post("/portal")
async def plan_portal(
    request: Request,
    console: ConsoleDep,
    stripe: StripeDep,
    body: Annotated[PortalBody | None, Body()] = None,
) -> dict[str, str]:
    url = await platform_plan.portal(
        console.session,
        stripe,
        console.settings,
        platform_id=console.platform_id,
        return_url=body.return_url if body else None,
        base_url=str(request.base_url),
    )
    return {"url": url}


@router.get("")
async def plan_status(console: ConsoleDep) -> PlanOut:
    found = await platform_plan.overview(console.session, console.settings, console.platform_id)
    return PlanOut.of(found)
