"""Draining on SIGTERM: readiness turns false first, the server's own handler still runs, and
streams end (to be followed elsewhere) only when the bus is shared."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import pytest

from support import ClientFactory, app_of
from tollhouse.kit import sse
from tollhouse.kit.drain import Drain

pytestmark = pytest.mark.anyio

# Bounds the waits below; the events they wait for come at once.
WITHIN_SECONDS = 5.0


@pytest.fixture
def server_handler() -> Iterator[list[int]]:
    """Stands in for uvicorn's SIGTERM handler (it stops the server); records its calls."""
    calls: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_sigterm_begins_draining_then_runs_the_servers_handler(
    server_handler: list[int],
) -> None:
    drain = Drain()
    began = asyncio.Event()
    drain.on_begin(began.set)
    restore = drain.on_sigterm()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(began.wait(), WITHIN_SECONDS)
    finally:
        restore()
    assert drain.draining
    assert server_handler == [signal.SIGTERM]
    # Restored: a later SIGTERM reaches the server's handler alone.
    assert signal.getsignal(signal.SIGTERM) is not None
    assert signal.getsignal(signal.SIGTERM).__name__ == "handle"  # type: ignore[union-attr]


def test_without_a_servers_handler_nothing_is_installed() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        Drain().on_sigterm()()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_draining_begins_once() -> None:
    drain = Drain()
    calls: list[str] = []
    drain.on_begin(lambda: calls.append("begun"))
    drain.begin()
    drain.begin()
    assert calls == ["begun"]
    assert drain.draining


async def test_a_stream_ends_without_a_terminal_frame_when_handed_off() -> None:
    handed_off = asyncio.Event()
    sent = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        yield sse.frame('{"event":"progress"}')
        sent.set()
        await asyncio.Event().wait()  # a run that goes on elsewhere
        yield sse.frame("never")

    received: list[bytes] = []

    async def read() -> None:
        async for chunk in sse.with_keepalive(frames(), 60, handed_off):
            received.append(chunk)

    reader = asyncio.create_task(read())
    await asyncio.wait_for(sent.wait(), WITHIN_SECONDS)
    handed_off.set()
    await asyncio.wait_for(reader, WITHIN_SECONDS)
    assert received == [b'data: {"event":"progress"}\n\n']


@pytest.mark.parametrize("shared_bus", [True, False])
async def test_draining_hands_streams_off_only_to_a_shared_bus(
    make_client: ClientFactory, shared_bus: bool
) -> None:
    redis_url = os.environ.get("TOLLHOUSE_TEST_REDIS_URL")
    if shared_bus and not redis_url:
        pytest.skip("the shared (Redis) bus needs TOLLHOUSE_TEST_REDIS_URL")
    client = await make_client(redis_url=redis_url if shared_bus else None)
    app = app_of(client)
    assert not app.state.generation.handed_off.is_set()
    app.state.drain.begin()
    assert (await client.get("/health/ready")).status_code == 503
    # With a bus in this process only, streams stay open until their runs end here.
    assert app.state.generation.handed_off.is_set() is shared_bus
