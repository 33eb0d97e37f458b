"""What every console page needs: the signed-in developer (the `tollhouse_session` cookie),
the same `Console` scope the Developer API's routes use, rendering, refusals and paging.

A page holds no rule of its own: it parses a form and calls the Developer API's handler or
the domain service behind it, so the JSON API and the pages cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from tollhouse.console.deps import Console
from tollhouse.db.session import SessionDep
from tollhouse.identity.caller import SESSION_COOKIE, identity_context
from tollhouse.kit.errors import NotFound, TollhouseError
from tollhouse.metering.meter import meter_of
from tollhouse.tenancy import developers
from tollhouse.tenancy import service as tenancy
from tollhouse.tenancy.models import Project
from tollhouse.web.cookies import clear_cookie, set_cookie
from tollhouse.web.forms import InvalidForm
from tollhouse.web.hosted.common import PageRefused
from tollhouse.web.templating import render

HOME = "/console"
SIGN_IN = "/console/signin"
PAGE_SIZE = 20
Row = TypeVar("Row")


class SignInRequired(TollhouseError):
    """No console session on this browser: the page answers with the sign-in page."""

    status_code = 401


async def sign_in_redirect(request: Request, exc: Exception) -> Response:
    return RedirectResponse(f"{SIGN_IN}?{urlencode({'next': request.url.path})}", 303)


@dataclass(frozen=True, slots=True)
class ConsolePage:
    request: Request
    console: Console
    email: str
    is_operator: bool = False


async def console_page(request: Request, session: SessionDep) -> ConsolePage:
    context = identity_context(request)
    developer = await developers.developer_for_credential(
        session, context.pepper, request.cookies.get(SESSION_COOKIE, ""), "session"
    )
    if developer is None:
        raise SignInRequired()
    console = Console(
        platform_id=developer.platform_id,
        developer_id=developer.id,
        session=session,
        pepper=context.pepper,
        settings=context.settings,
        identity=context,
        meter=meter_of(request),
    )
    return ConsolePage(request, console, developer.email, developer.is_operator)


ConsolePageDep = Annotated[ConsolePage, Depends(console_page)]


async def project_of(page: ConsolePage, project_id: str) -> Project:
    """The path's project; another platform's (or an unknown) id is a 404 page."""
    try:
        return await page.console.project(project_id[:40])
    except NotFound as exc:
        raise PageRefused(404, "Not found", "No such project in your account.") from exc


@dataclass(frozen=True, slots=True)
class Switch:
    """The test/live switch of a project's pages: the project of each mode, if it exists."""

    test: Project | None
    live: Project | None


async def mode_switch(page: ConsolePage, project: Project) -> Switch:
    projects = await tenancy.projects_of_platform(page.console.session, page.console.platform_id)
    if project.mode == "live":
        test = next((p for p in projects if p.id == project.promoted_from_id), None)
        return Switch(test, project)
    live = next((p for p in projects if p.promoted_from_id == project.id), None)
    return Switch(project, live)


# --- sessions ------------------------------------------------------------------------------


def open_session(request: Request, response: Response, plaintext: str) -> None:
    max_age = int(developers.SESSION_LIFETIME.total_seconds())
    set_cookie(request, response, SESSION_COOKIE, plaintext, max_age)


def close_session(request: Request, response: Response) -> None:
    clear_cookie(request, response, SESSION_COOKIE)


# --- rendering -----------------------------------------------------------------------------


def show(
    request: Request,
    template: str,
    *,
    status: int = 200,
    me: ConsolePage | None = None,
    **context: Any,
) -> HTMLResponse:
    for name, default in (("error", None), ("notice", None), ("fields", {}), ("values", {})):
        context.setdefault(name, default)
    context.setdefault("project", None)
    return render(request, f"console/{template}.html", status=status, me=me, **context)


async def show_project(
    page: ConsolePage, project: Project, template: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page of one project, under its name and test/live switch."""
    switch = await mode_switch(page, project)
    return show(
        page.request, template, status=status, me=page, project=project, switch=switch, **context
    )


async def refusal(page: ConsolePage, exc: TollhouseError) -> dict[str, Any]:
    """Undo the failed attempt's writes; what the form shows again: status, message, fields
    (pages reload what they show after this, since a rollback expires loaded rows)."""
    await page.console.session.rollback()
    fields = exc.fields if isinstance(exc, InvalidForm) else {}
    return {"status": exc.status_code, "error": exc.message, "fields": fields}


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# --- paging --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paging:
    """One page of a list, and the links to its neighbours (`ui.pager`)."""

    request: Request
    offset: int
    limit: int
    total: int
    # The query parameter holding this list's offset: a page with several lists pages each
    # under its own name, the others' positions kept.
    param: str = "offset"

    def url(self, offset: int) -> str:
        """This page's URL (its search kept) at another offset."""
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k != self.param]
        return f"{self.request.url.path}?{urlencode([*params, (self.param, str(offset))])}"


def offset_of(request: Request, param: str = "offset") -> int:
    raw = request.query_params.get(param, "0")
    return min(int(raw), 1_000_000) if raw.isdigit() else 0


def paged(
    request: Request, rows: Sequence[Row], param: str = "offset"
) -> tuple[Sequence[Row], Paging]:
    """A page of an already bounded list (a developer's projects or tokens)."""
    offset = offset_of(request, param)
    page = Paging(request, offset, PAGE_SIZE, len(rows), param)
    return rows[offset : offset + PAGE_SIZE], page
