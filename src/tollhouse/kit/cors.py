"""Starlette's CORS middleware with `Vary` said once.

It appends `Origin` to whatever `Vary` a response already carries, so a proxied upstream's
own `Vary: Origin` came out as `Origin, Origin`; the response's `Vary` lines are folded into
one without repeats (`proxy_headers.merged_vary`).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware import cors
from starlette.types import Message, Send

from tollhouse.kit.proxy_headers import merged_vary


class CORSMiddleware(cors.CORSMiddleware):
    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        async def vary_once(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = merged_vary(message["headers"])
            await send(message)

        await super().send(message, vary_once, request_headers)
