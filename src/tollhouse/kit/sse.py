"""Server-sent events: frames, the headers proxies need, and keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

HEADERS = {
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    # nginx buffers responses unless told not to, which would hold every frame back.
    "X-Accel-Buffering": "no",
}
MEDIA_TYPE = "text/event-stream"
KEEPALIVE = b": keep-alive\n\n"


def frame(data: str) -> bytes:
    """One `data:` message (the contract sends no `event:` or `id:` lines)."""
    return f"data: {data}\n\n".encode()


async def with_keepalive(
    frames: AsyncIterator[bytes], seconds: float, until: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """`frames`, with a comment whenever nothing was sent for `seconds` (proxies time out).

    Ends early, without a terminal frame, once `until` is set (this process is draining and
    the client can follow the same stream from another replica)."""
    iterator = aiter(frames)
    pending: asyncio.Task[bytes] | None = None
    stop = asyncio.ensure_future(until.wait()) if until is not None else None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            waiting = {pending} if stop is None else {pending, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if stop is not None and stop in done:
                return
            if pending not in done:
                yield KEEPALIVE
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield item
    finally:
        if stop is not None:
            stop.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
