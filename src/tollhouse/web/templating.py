"""The one way a page is rendered: Jinja2 templates under `web/templates`, autoescaped, with
the CSRF token, the static URL helper and the page's Content-Security-Policy."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tollhouse import __version__
from tollhouse.web.security import (
    CSRF_FIELD,
    apply_csrf_cookie,
    content_security_policy,
    csrf_token,
)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_URL = "/static/"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The version in static URLs: a deploy changes them, so browsers may cache them for long.
    env.globals["static"] = lambda path: f"{STATIC_URL}{path}?v={__version__}"
    env.globals["csrf_field_name"] = CSRF_FIELD
    return env


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    form_action: Iterable[str] = (),
    **context: Any,
) -> HTMLResponse:
    """`template` with `context`; `form_action` names origins this page's forms may end up at
    (after a redirect) besides our own."""
    page = environment().get_template(template)
    html = page.render(request=request, csrf_token=csrf_token(request), **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = content_security_policy(form_action)
    response.headers["Cache-Control"] = "no-store"
    apply_csrf_cookie(request, response)
    return response
