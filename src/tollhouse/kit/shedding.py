"""Graceful overload: past MAX_CONCURRENT_REQUESTS in flight, a worker answers at once.

Without a bound, an event loop past capacity accepts everything and every request waits
behind every other: at twice the capacity latency grows without limit (issue 14 measured
/gw at p50 1.2 to 2.3 s). With it, the excess gets `503 overloaded` with `Retry-After: 1` in the
envelope in microseconds, and the requests admitted keep their latency. `/health` is never
shed (a probe must see a live process, not a busy one).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tollhouse.kit.error_handlers import error_response

RETRY_AFTER_SECONDS = 1


class LoadShedding:
    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/health"):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            response = error_response(
                503,
                "overloaded",
                "The server is at capacity; retry shortly.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                extra={"retryAfter": RETRY_AFTER_SECONDS},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
