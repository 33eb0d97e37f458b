"""Whether this process still takes new work, and what draining does on SIGTERM.

An orchestrator (or a load balancer's health check) stops routing to a replica whose
/health/ready answers 503, while the replica finishes what it has already accepted. On
SIGTERM the server (uvicorn) stops accepting and waits for in-flight requests (up to
DRAIN_TIMEOUT_SECONDS); draining first turns readiness false and tells the parts that hold
long work (streams, generation runs) to hand it over or finish it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self._listeners: list[Callable[[], None]] = []

    def on_begin(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the event loop) when draining begins."""
        self._listeners.append(listener)

    def begin(self) -> None:
        """From now on readiness is false; requests already accepted run to their end."""
        if self.draining:
            return
        self.draining = True
        for listener in self._listeners:
            listener()

    def on_sigterm(self) -> Callable[[], None]:
        """Begin draining on SIGTERM, before the server's own handler stops the server.

        Chains the handler the server installed (uvicorn's); where there is none (no server
        in this process, or not the main thread) nothing is installed. Returns the undo.
        """
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            return lambda: None
        loop = asyncio.get_running_loop()

        def handle(signum: int, frame: FrameType | None) -> Any:
            loop.call_soon_threadsafe(self.begin)
            return previous(signum, frame)

        signal.signal(signal.SIGTERM, handle)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore
