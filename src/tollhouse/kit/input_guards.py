"""Input refused for every route at once, before any route's own validation runs.

A NUL character is valid JSON (`"\\u0000"`) and a valid percent-escape (`%00`), but
PostgreSQL's text types refuse it (a 500) while SQLite stores it, so one request would behave
differently on the two databases. It is refused here in path, query and JSON bodies, for
every route, rather than field by field. Bodies a route reads itself (webhooks, proxies) are
not parsed here: they are passed on or verified as bytes.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute

from tollhouse.kit.errors import ValidationFailed

_NUL = "\x00"
_ESCAPED_NUL = b"\\u0000"


class NulCharacter(ValidationFailed):
    message = "The request contains a NUL character (\\u0000), which no field accepts."


async def refuse_nul_characters(request: Request) -> None:
    """An app-wide dependency: 422 for a NUL anywhere in the path, query or JSON body."""
    scope = request.scope
    if _NUL in scope["path"] or b"%00" in scope["query_string"]:
        raise NulCharacter()
    route = scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    # FastAPI has already read the body of a route that declares one: this is its cache.
    body = await request.body()
    # The cheap test first; only a body that spells the escape is parsed to be sure.
    if _ESCAPED_NUL in body and _holds_nul(_parsed(body)):
        raise NulCharacter()


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None  # not JSON: the route's own validation says so


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return _NUL in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
