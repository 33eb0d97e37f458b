"""The MCP server (flash-contract §1.7, §7), mounted at /mcp/ in the app.

Stateless Streamable HTTP: every POST carries its own credentials, resolved by the same
Caller resolution as the HTTP API (our bearer tokens, `sk_…` keys, personal tokens, the
service key with `X-User-ID`, signed gateway requests). No credentials → 401 in the
contract's MCP shape; OPTIONS passes (preflights). Progress of a tool call goes back on its
own response stream, so replicas need no shared MCP session state.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from tollhouse.identity.caller import CallerKind, resolve_caller
from tollhouse.mcp.toolkit import refusals_as_tool_errors
from tollhouse.mcp.tools import TOOLS

PATH = "/mcp"
REALM = 'Bearer realm="tollhouse-mcp"'


def build_server() -> FastMCP:
    server: FastMCP = FastMCP(
        "tollhouse",
        instructions="Generate historical scenes (timepoints), read them, and check your "
        "credits. Generating costs credits; reading is free.",
        stateless_http=True,
        # Callers authenticate with credentials, never cookies alone from another origin
        # (the Caller resolution refuses cross-site console sessions): no host allow-list.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    for name, (tool, hints) in TOOLS.items():
        server.add_tool(
            refusals_as_tool_errors(tool),
            name=name,
            description=inspect.cleandoc(tool.__doc__ or ""),
            annotations=hints,
        )
    return server


class McpEndpoint:
    """The ASGI app mounted at /mcp: authenticates, then hands over to the SDK."""

    def __init__(self) -> None:
        self.server = build_server()
        self.server.streamable_http_app()  # creates the session manager

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method != "OPTIONS":
            # A bad credential raises our usual 401/403 envelope (the app's error handlers).
            caller = await resolve_caller(request)
            if caller.kind is CallerKind.ANONYMOUS:
                response = JSONResponse(
                    {
                        "error": "Unauthorized",
                        "message": "The MCP server needs credentials: Authorization: Bearer "
                        "<access token | sk_… key | dev_… token>, or the service key.",
                        "www_authenticate": REALM,
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": REALM},
                )
                await response(scope, receive, send)
                return
        await self.server.session_manager.handle_request(scope, receive, send)
