"""`STRIPE_SANDBOX=1`: the server starts the sandbox beside itself, in its own event loop.

Why beside, on its own port (STRIPE_SANDBOX_PORT, 127.0.0.1), rather than under a path of
the app: the SDK, the Checkout page and Connect's redirect all need an absolute address, and
the sandbox's own port is known before the server knows its public one — so `make run` with
one variable is all a newcomer types. Webhooks go straight into the app through an
in-process ASGI transport (no URL or port of ours to configure), signed like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import structlog
import uvicorn
from starlette.types import ASGIApp

from tollhouse.config import ConfigError, Settings
from tollhouse.stripe_sandbox import setup
from tollhouse.stripe_sandbox.api import sandbox_app
from tollhouse.stripe_sandbox.state import Sandbox
from tollhouse.stripe_sandbox.webhooks import webhook_endpoint

log = structlog.get_logger("tollhouse.stripe_sandbox")

# The app's webhook route, as the sandbox's in-process transport addresses it.
APP_ORIGIN = "http://tollhouse.in-process"
WEBHOOK_PATH = "/webhook/stripe"


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the serving process owns Ctrl-C, and its
    lifespan stops the sandbox."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class BesideSandbox:
    settings: Settings
    sandbox: Sandbox
    whsec: dict[str, str]
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _client: httpx.AsyncClient | None = None
    _socket: socket.socket | None = field(default=None, repr=False)

    @classmethod
    def prepare(cls, settings: Settings) -> BesideSandbox:
        """The sandbox and the server's settings pointed at it (refused in production)."""
        setup.refuse_in_production(settings)
        base_url = f"http://127.0.0.1:{settings.stripe_sandbox_port}"
        whsec = setup.webhook_secrets()
        configured = settings.model_copy(update=setup.server_settings(settings, base_url, whsec))
        sandbox = Sandbox(base_url=base_url)
        assert configured.billing_products is not None
        setup.seed(sandbox, configured.billing_products)
        return cls(configured, sandbox, whsec)

    async def start(self, app: ASGIApp) -> None:
        port = self.settings.stripe_sandbox_port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"STRIPE_SANDBOX_PORT={port} is taken ({exc.strerror}): set another port, "
                "and run one worker with the sandbox"
            ) from None
        sock.listen(128)  # connections queue from here on, before uvicorn accepts them
        self._socket = sock
        self._client = httpx.AsyncClient(
            mounts={APP_ORIGIN: httpx.ASGITransport(app=app)}, timeout=30.0
        )
        for mode, secret in self.whsec.items():
            url = APP_ORIGIN + WEBHOOK_PATH
            webhook_endpoint(self.sandbox, url, secret, livemode=mode == "live")
        config = uvicorn.Config(
            sandbox_app(self.sandbox, self._client),
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        log.warning("stripe_sandbox_started", url=self.sandbox.base_url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        if self._client is not None:
            await self._client.aclose()
        if self._socket is not None:
            self._socket.close()
