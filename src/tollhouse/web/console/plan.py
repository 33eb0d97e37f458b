"""The platform plan: what the developer pays the operator, its status and overage estimate,
and the way to Stripe Checkout or the billing portal (the Developer API's handlers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tollhouse.billing.stripe.client import StripeDep
from tollhouse.console import plan as api
from tollhouse.kit.errors import TollhouseError
from tollhouse.web.console.common import ConsolePage, ConsolePageDep, refusal, show
from tollhouse.web.forms import parse_form
from tollhouse.web.hosted.forms import EmptyForm

router = APIRouter(include_in_schema=False)


async def _plan_page(page: ConsolePage, *, status: int = 200, **context: Any) -> HTMLResponse:
    plan = await api.plan_status(page.console)
    return show(page.request, "plan", status=status, me=page, plan=plan, **context)


@router.get("/console/plan")
async def plan_page(page: ConsolePageDep) -> HTMLResponse:
    return await _plan_page(page)


@router.post("/console/plan/{where}")
async def plan_link(where: str, page: ConsolePageDep, stripe: StripeDep) -> HTMLResponse:
    """A Checkout or portal session; the page then links to it (a link, not a redirect, so the
    form's CSP `form-action` need not name Stripe)."""
    try:
        await parse_form(page.request, EmptyForm)
        if where == "checkout":
            made = await api.plan_checkout(page.request, page.console, stripe)
        elif where == "portal":
            made = await api.plan_portal(page.request, page.console, stripe)
        else:
            return await _plan_page(page, status=404, error="No such action.")
    except TollhouseError as exc:
        return await _plan_page(page, **await refusal(page, exc))
    return await _plan_page(page, stripe_url=made["url"], stripe_action=where)
