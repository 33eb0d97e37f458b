"""Mounts the pages: static files, the hosted end-user pages, development tools, and the
developer console, and the error page for pages that cannot be shown."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from tollhouse.web.console import account as console_account
from tollhouse.web.console import catalog as console_catalog
from tollhouse.web.console import customers as console_customers
from tollhouse.web.console import events as console_events
from tollhouse.web.console import keys as console_keys
from tollhouse.web.console import money as console_money
from tollhouse.web.console import operator as console_operator
from tollhouse.web.console import plan as console_plan
from tollhouse.web.console import projects as console_projects
from tollhouse.web.console import upstreams as console_upstreams
from tollhouse.web.console.common import SignInRequired, sign_in_redirect
from tollhouse.web.dev import mail as dev_mail
from tollhouse.web.hosted import account, recovery, signin, signup
from tollhouse.web.hosted.common import PageRefused
from tollhouse.web.templating import STATIC, render


async def _page_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageRefused)
    return render(
        request, "error.html", status=exc.status_code, title=exc.title, message=exc.message
    )


def include(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (signup, signin, recovery, account, dev_mail):
        app.include_router(module.router)
    app.add_exception_handler(PageRefused, _page_refused)
    for page in (
        console_account,
        console_projects,
        console_keys,
        console_catalog,
        console_customers,
        console_money,
        console_upstreams,
        console_plan,
        console_operator,
        console_events,
    ):
        app.include_router(page.router)
    app.add_exception_handler(SignInRequired, sign_in_redirect)
