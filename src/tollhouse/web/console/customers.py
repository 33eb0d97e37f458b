"""Customers (a project's end users): search, usage per day, detail with plan and usage,
change plan, delete. The Developer API's end-user handlers do the work."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from tollhouse.catalog import service as catalog
from tollhouse.console import end_users as api
from tollhouse.console.schemas import EndUserUpdate
from tollhouse.kit.clock import utcnow
from tollhouse.kit.errors import NotFound, TollhouseError
from tollhouse.metering import quota
from tollhouse.metering.meter import meter_of
from tollhouse.tenancy.models import Project
from tollhouse.web.console.charts import daily_bars
from tollhouse.web.console.common import (
    PAGE_SIZE,
    ConsolePage,
    ConsolePageDep,
    Paging,
    offset_of,
    project_of,
    redirect,
    refusal,
    show_project,
)
from tollhouse.web.forms import parse_body, parse_form
from tollhouse.web.hosted.common import PageRefused
from tollhouse.web.hosted.forms import EmptyForm

router = APIRouter(include_in_schema=False)
SEARCH_MAX = 200


@router.get("/console/projects/{project_id}/customers")
async def customers_page(project_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    search = page.request.query_params.get("q", "")[:SEARCH_MAX]
    found = await api.list_users(
        project, page.console, limit=PAGE_SIZE, offset=offset_of(page.request), q=search
    )
    ids = [customer.id for customer in found.users]
    headroom = await api.headroom_of_users(project, page.console, meter_of(page.request), ids)
    usage = await api.usage(project, page.console)
    series = [(day.day, day.units) for day in usage.daily]
    chart = daily_bars("Units per day, all customers", series, usage.since, api.USAGE_DAYS)
    return await show_project(
        page,
        project,
        "customers",
        customers=found.users,
        paging=Paging(page.request, found.offset, found.limit, found.total),
        search=search,
        chart=chart,
        headroom=headroom,
    )


def _user_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw[:40])
    except ValueError as exc:
        raise PageRefused(404, "Not found", "No such customer in this project.") from exc


async def _customer_page(
    page: ConsolePage, project: Project, user_id: uuid.UUID, *, status: int = 200, **context: Any
) -> HTMLResponse:
    try:
        customer = await api.get_user(user_id, project, page.console)
        quota_now = await api.get_user_quota(user_id, project, page.console, page.request)
    except NotFound as exc:
        raise PageRefused(404, "Not found", "No such customer in this project.") from exc
    since = (utcnow() - timedelta(days=api.USAGE_DAYS - 1)).date()
    meter = page.console.meter
    unflushed = partial(meter.unflushed_days, project.id, since, user_id) if meter else None
    series = await quota.daily_series(
        page.console.session, project.id, since, user_id, unflushed=unflushed
    )
    plans = sorted(await catalog.subscription_tier_slugs(page.console.session, project.id))
    return await show_project(
        page,
        project,
        "customer",
        status=status,
        customer=customer,
        headroom=quota_now.quota,
        plans=plans,
        chart=daily_bars("Units per day", series, since, api.USAGE_DAYS),
        **context,
    )


@router.get("/console/projects/{project_id}/customers/{user_id}")
async def customer_page(project_id: str, user_id: str, page: ConsolePageDep) -> HTMLResponse:
    return await _customer_page(page, await project_of(page, project_id), _user_id(user_id))


@router.post("/console/projects/{project_id}/customers/{user_id}/plan")
async def change_plan(project_id: str, user_id: str, page: ConsolePageDep) -> HTMLResponse:
    project = await project_of(page, project_id)
    customer_id = _user_id(user_id)
    try:
        body = await parse_body(page.request, EndUserUpdate)
        await api.update_user(customer_id, body, project, page.console)
    except NotFound as exc:
        raise PageRefused(404, "Not found", "No such customer in this project.") from exc
    except TollhouseError as exc:
        failed = await refusal(page, exc)
        return await _customer_page(page, await project_of(page, project_id), customer_id, **failed)
    return await _customer_page(page, project, customer_id, notice=f"Plan changed to {body.plan}.")


@router.post("/console/projects/{project_id}/customers/{user_id}/delete")
async def delete_customer(project_id: str, user_id: str, page: ConsolePageDep) -> RedirectResponse:
    project = await project_of(page, project_id)
    await parse_form(page.request, EmptyForm)
    try:
        await api.delete_user(_user_id(user_id), project, page.console)
    except NotFound as exc:
        raise PageRefused(404, "Not found", "No such customer in this project.") from exc
    return redirect(f"/console/projects/{project_id}/customers")
