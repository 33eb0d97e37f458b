"""Money: Stripe Connect per mode (the OAuth round trip starts at the Developer API and lands
back here), the platform's live totals and charts (sales and live users per day, per mode);
per project MRR, the same charts, subscriptions, orders, low stock and the Stripe events
received. The figures are the Platform API dashboard's (`platform_api/dashboard.py`) and the
Developer API's series (`console/money.py`), computed once there."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict

from tollhouse.billing import cart
from tollhouse.billing.stripe.client import StripeDep
from tollhouse.console import money as series
from tollhouse.console import stripe as api
from tollhouse.identity.caller import Caller, CallerKind
from tollhouse.kit.errors import TollhouseError
from tollhouse.platform_api import dashboard
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project
from tollhouse.web.console.charts import BarChart, LineChart, daily_bars, daily_line
from tollhouse.web.console.common import (
    PAGE_SIZE,
    ConsolePage,
    ConsolePageDep,
    Paging,
    offset_of,
    paged,
    project_of,
    refusal,
    show,
    show_project,
)
from tollhouse.web.forms import parse_form

router = APIRouter(include_in_schema=False)


class DisconnectForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    mode: Literal["test", "live"]


def _platform_caller(page: ConsolePage, project_id: str = "") -> Caller:
    """The dashboard's figures are asked for as the project's backend would ask for them."""
    return Caller(CallerKind.SECRET_KEY, project_id, platform_id=page.console.platform_id)


def _charts(figures: series.MoneySeries) -> tuple[BarChart, LineChart]:
    sales = [(day.day, day.cents) for day in figures.sales]
    users = [(day.day, day.users) for day in figures.live_users]
    return (
        daily_bars("Sales per day", sales, figures.since, figures.days, unit="", cents=True),
        daily_line("Live users per day", users, figures.since, figures.days),
    )


async def _money_page(
    page: ConsolePage, stripe: StripeDep, *, status: int = 200, **context: Any
) -> HTMLResponse:
    connections = await api.connect_status(page.console, stripe)
    totals = await dashboard.totals(page.console.session, _platform_caller(page))
    connected = page.request.query_params.get("stripe") == "connected"
    context.setdefault("notice", "Stripe is connected." if connected else None)
    projects = await tenancy.projects_of_platform(page.console.session, page.console.platform_id)
    wanted = page.request.query_params.get("mode")
    mode: series.Mode = "live" if wanted == "live" else "test"
    if wanted not in ("test", "live") and any(p.mode == "live" for p in projects):
        mode = "live"
    sales_chart, users_chart = _charts(await series.platform_series(page.console, mode))
    return show(
        page.request,
        "money",
        status=status,
        me=page,
        modes=connections["modes"],
        totals=totals["totals"],
        chart_mode=mode,
        sales_chart=sales_chart,
        users_chart=users_chart,
        **context,
    )


@router.get("/console/money")
async def money_page(page: ConsolePageDep, stripe: StripeDep) -> HTMLResponse:
    return await _money_page(page, stripe)


@router.post("/console/money/disconnect")
async def disconnect(page: ConsolePageDep, stripe: StripeDep) -> HTMLResponse:
    try:
        form = await parse_form(page.request, DisconnectForm)
        await api.connect_remove(form.mode, page.console)
    except TollhouseError as exc:
        return await _money_page(page, stripe, **await refusal(page, exc))
    return await _money_page(page, stripe, notice=f"Stripe {form.mode} disconnected.")


async def _project_money(page: ConsolePage, project: Project) -> HTMLResponse:
    figures = await dashboard.dashboard(page.console.session, _platform_caller(page, project.id))
    offset = offset_of(page.request)
    orders = await cart.orders_of_project(
        page.console.session, project.id, limit=PAGE_SIZE, offset=offset
    )
    sales_count = figures["metrics"]["storeSalesCount"]
    subscribed, subscriptions_page = paged(
        page.request, [c for c in figures["customers"] if c["status"] != "none"], "subscriptions"
    )
    events, events_page = paged(page.request, figures["webhook"]["recent"], "events")
    sales_chart, users_chart = _charts(await series.series_of(page.console, [project.id]))
    low_stock = [
        tier
        for tier in figures["tiers"]
        if tier.get("inventory") is not None and 0 < tier["inventory"] <= dashboard.LOW_STOCK
    ]
    return await show_project(
        page,
        project,
        "project_money",
        metrics=figures["metrics"],
        subscriptions=subscribed,
        subscriptions_page=subscriptions_page,
        sales_chart=sales_chart,
        users_chart=users_chart,
        orders=orders,
        # Orders are read a page at a time: "older" is offered while a page comes back full.
        orders_page=Paging(page.request, offset, PAGE_SIZE, offset + len(orders)),
        more_orders=len(orders) == PAGE_SIZE,
        low_stock=low_stock,
        events=events,
        events_page=events_page,
        sales_count=sales_count,
    )


@router.get("/console/projects/{project_id}/money")
async def project_money(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    return await _project_money(page, await project_of(page, project_id))
