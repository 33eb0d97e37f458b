"""Rendering helpers shared by the hosted pages: a page, or the same page again with the
refusal that stopped a form (its writes rolled back)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse

from tollhouse.identity.caller import identity_context
from tollhouse.kit.errors import TollhouseError
from tollhouse.web.forms import InvalidForm
from tollhouse.web.hosted.common import HostedPage
from tollhouse.web.templating import render


def show(page: HostedPage, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("error", None)
    context.setdefault("fields", {})
    context.setdefault("values", {})
    return render(
        page.request,
        f"hosted/{template}.html",
        status=status,
        form_action=page.redirect_origin,
        page=page,
        dev_mail=not _production(page),
        **context,
    )


async def refuse(
    page: HostedPage, template: str, exc: TollhouseError, values: dict[str, Any], **context: Any
) -> HTMLResponse:
    """The form again with what was wrong; nothing the failed attempt wrote is kept."""
    await roll_back(page)
    fields = exc.fields if isinstance(exc, InvalidForm) else {}
    safe = {name: value for name, value in values.items() if "password" not in name}
    return show(
        page,
        template,
        status=exc.status_code,
        error=exc.message,
        fields=fields,
        values=safe,
        **context,
    )


def _production(page: HostedPage) -> bool:
    return identity_context(page.request).settings.is_production


async def form_values(page: HostedPage) -> dict[str, Any]:
    """What was posted (already parsed once, so cached), to fill the form again."""
    form = await page.request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def roll_back(page: HostedPage, *loaded: object) -> None:
    """Undo the failed attempt's writes, and reload what the page still shows (a rollback
    expires every loaded row, and a template must not lazy-load)."""
    await page.session.rollback()
    for row in (page.project, *loaded):
        await page.session.refresh(row)
