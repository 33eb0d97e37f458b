"""What a tool runs with: the request's Caller, a database session, the app's domains.

A tool is a plain async function taking its arguments and a `Context`; `call(ctx)` gives it
a `ToolCall`. Refusals are raised as our usual errors (TollhouseError) and reach the client
as a tool error carrying the same envelope the HTTP API answers with.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from fastapi import FastAPI, Request
from mcp.server.fastmcp import Context
from mcp.server.fastmcp.exceptions import ToolError
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.engine import Database
from tollhouse.identity.caller import Caller, resolve_caller
from tollhouse.kit.errors import TollhouseError, envelope

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ToolCall:
    request: Request
    caller: Caller

    @property
    def app(self) -> FastAPI:
        app: FastAPI = self.request.app
        return app

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One unit of work, committed when the block ends without an error."""
        database: Database = self.app.state.database
        async with database.session() as session:
            yield session
            await session.commit()


async def call(ctx: Context[Any, Any, Any]) -> ToolCall:
    """The caller of this tool call, resolved from its HTTP request (server.py has already
    refused anonymous ones)."""
    request = ctx.request_context.request
    assert isinstance(request, Request)
    return ToolCall(request, await resolve_caller(request))


def refusals_as_tool_errors(tool: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Our refusals (402, 404, 422 …) become tool errors whose text is our error envelope."""

    @functools.wraps(tool)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await tool(*args, **kwargs)
        except TollhouseError as exc:
            body = envelope(exc.code, exc.message, exc.detail)
            raise ToolError(json.dumps({"status": exc.status_code, **body})) from exc

    return wrapped
