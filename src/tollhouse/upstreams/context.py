"""The upstreams an app serves, built once from settings and closed on shutdown."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

from fastapi import Request

from tollhouse.config import OperatorUpstream, Settings, UpstreamRouteRule
from tollhouse.kit.forwarding import Timeouts, Upstream, UpstreamConfig
from tollhouse.kit.ssrf import public_only_connector
from tollhouse.upstreams import clockchain
from tollhouse.upstreams.policy import RoutePolicy
from tollhouse.upstreams.relay import Relay


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.upstream_connect_timeout_seconds,
        read=settings.upstream_read_timeout_seconds,
        total=settings.upstream_total_timeout_seconds,
    )


class UpstreamPool:
    """Developers' upstreams: one pooled client per origin, made on first use.

    At most `max_origins` clients are kept; the least recently used is evicted from the map
    and closed in the background once nothing can still be using it: after `grace_seconds`
    (a caller may hold it between `for_origin` and sending) and once every response it sent
    has been relayed (a stream may run for long). Unless `allow_private`, clients connect only
    to public addresses, checked when each connection is opened (`public_only_connector`).
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
        self._clients: OrderedDict[str, Upstream] = OrderedDict()
        self._retiring: dict[asyncio.Task[None], Upstream] = {}

    def _client(self, netloc: str, origin: str) -> Upstream:
        config = UpstreamConfig(netloc, origin, timeouts=self.timeouts)
        if self.allow_private:
            return Upstream(config)
        return Upstream(config, connector=public_only_connector)

    def for_origin(self, url: str) -> Upstream:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        client = self._clients.get(origin)
        if client is not None:
            self._clients.move_to_end(origin)
            return client
        client = self._client(parts.netloc, origin)
        self._clients[origin] = client
        while len(self._clients) > self.max_origins:
            _, evicted = self._clients.popitem(last=False)
            task = asyncio.get_running_loop().create_task(self._retire(evicted))
            self._retiring[task] = evicted
            task.add_done_callback(self._retiring.pop)
        return client

    async def _retire(self, client: Upstream) -> None:
        await asyncio.sleep(self.grace_seconds)
        await client.wait_idle()
        await client.close()

    async def close(self) -> None:
        for task, upstream in list(self._retiring.items()):
            task.cancel()
            await upstream.close()
        for client in self._clients.values():
            await client.close()
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
