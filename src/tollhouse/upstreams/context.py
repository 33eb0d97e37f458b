"""The upstreams an app serves, built once from settings and closed on shutdown."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from fastapi import Request

from tollhouse.config import OperatorUpstream, Settings, UpstreamRouteRule
from tollhouse.kit.forwarding import Timeouts, Upstream, UpstreamConfig
from tollhouse.kit.ssrf import public_only_transport
from tollhouse.upstreams import clockchain
from tollhouse.upstreams.policy import RoutePolicy
from tollhouse.upstreams.relay import Relay


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.upstream_connect_timeout_seconds,
        read=settings.upstream_read_timeout_seconds,
        total=settings.upstream_total_timeout_seconds,
    )


class _Tracked(httpx.AsyncBaseTransport):
    """Counts the responses still open on a transport (from send until the body is closed)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._open = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _release(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._idle.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._open += 1
        self._idle.clear()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, self._release)
        return response

    async def wait_idle(self) -> None:
        while self._open:
            await self._idle.wait()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Released(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


@dataclass(frozen=True, slots=True)
class _Client:
    upstream: Upstream
    transport: _Tracked


class UpstreamPool:
    """Developers' upstreams: one pooled client per origin, made on first use.

    At most `max_origins` clients are kept; the least recently used is evicted from the map
    and closed in the background once nothing can still be using it: after `grace_seconds`
    (a caller may hold it between `for_origin` and sending) and once every response it sent
    has been closed (a stream may run for long). Unless `allow_private`, clients connect only
    to public addresses, checked when each connection is opened (`public_only_transport`).
    """

    def __init__(
        self,
        timeouts: Timeouts,
        *,
        allow_private: bool = False,
        max_origins: int = 256,
        grace_seconds: float = 5.0,
    ) -> None:
        self.timeouts = timeouts
        self.allow_private = allow_private
        self.max_origins = max(1, max_origins)
        self.grace_seconds = grace_seconds
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._retiring: dict[asyncio.Task[None], Upstream] = {}

    def _client(self, netloc: str, origin: str) -> _Client:
        config = UpstreamConfig(netloc, origin, timeouts=self.timeouts)
        # With a transport given, httpx takes the pool's limits from it, not from the client:
        # the same limits Upstream gives its client.
        options: dict[str, Any] = {
            "limits": httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
                keepalive_expiry=30.0,
            ),
            "http1": True,
            "http2": False,
            "trust_env": False,
        }
        inner = (
            httpx.AsyncHTTPTransport(**options)
            if self.allow_private
            else public_only_transport(**options)
        )
        transport = _Tracked(inner)
        return _Client(Upstream(config, transport=transport), transport)

    def for_origin(self, url: str) -> Upstream:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        client = self._clients.get(origin)
        if client is not None:
            self._clients.move_to_end(origin)
            return client.upstream
        client = self._client(parts.netloc, origin)
        self._clients[origin] = client
        while len(self._clients) > self.max_origins:
            _, evicted = self._clients.popitem(last=False)
            task = asyncio.get_running_loop().create_task(self._retire(evicted))
            self._retiring[task] = evicted.upstream
            task.add_done_callback(self._retiring.pop)
        return client.upstream

    async def _retire(self, client: _Client) -> None:
        await asyncio.sleep(self.grace_seconds)
        await client.transport.wait_idle()
        await client.upstream.close()

    async def close(self) -> None:
        for task, upstream in list(self._retiring.items()):
            task.cancel()
            await upstream.close()
        for client in self._clients.values():
            await client.upstream.close()
        self._clients.clear()


@dataclass(slots=True)
class UpstreamContext:
    settings: Settings
    clockchain: Relay | None
    operators: dict[str, Relay] = field(default_factory=dict)
    platform: UpstreamPool = field(default_factory=lambda: UpstreamPool(Timeouts()))

    @classmethod
    def from_settings(cls, settings: Settings, known_costs: Collection[str]) -> UpstreamContext:
        """Clients and route policies; PolicyError when a policy cannot be used."""
        timeouts = timeouts_of(settings)
        operators = {
            spec.name: _operator_relay(spec, timeouts, known_costs) for spec in settings.upstreams
        }
        return cls(
            settings,
            clockchain.relay(settings, timeouts, known_costs),
            operators,
            UpstreamPool(timeouts, allow_private=settings.private_urls_allowed),
        )

    async def close(self) -> None:
        if self.clockchain is not None:
            await self.clockchain.upstream.close()
        for relay in self.operators.values():
            await relay.upstream.close()
        await self.platform.close()


def _operator_relay(
    spec: OperatorUpstream, timeouts: Timeouts, known_costs: Collection[str]
) -> Relay:
    config = UpstreamConfig(
        name=spec.name,
        base_url=spec.url.rstrip("/") + "/" + spec.prefix.strip("/"),
        inject_headers={k: v.get_secret_value() for k, v in spec.inject_headers.items()},
        timeouts=timeouts,
    )
    # Without a policy: its methods on every path, for any authenticated caller, at cost_key.
    rules = spec.routes
    if rules is None:
        rules = [UpstreamRouteRule(methods=spec.methods, path="**", price=spec.cost_key)]
    return Relay(
        prefix=f"/api/v1/upstreams/{spec.name}",
        upstream=Upstream(config),
        policy=RoutePolicy.compile(spec.name, rules, known_costs),
        writer_token=spec.writer_token.get_secret_value() if spec.writer_token else None,
    )


def upstream_context(request: Request) -> UpstreamContext:
    return cast(UpstreamContext, request.app.state.upstreams)
