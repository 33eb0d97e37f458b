"""The upstreams an app serves, built once from settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

from fastapi import Request

from tollhouse.config import OperatorUpstream, Settings
from tollhouse.identity.caller import Caller
from tollhouse.kit.forwarding import Identity, Timeouts, Upstream, UpstreamConfig
from tollhouse.upstreams import clockchain


def timeouts_of(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.upstream_connect_timeout_seconds,
        read=settings.upstream_read_timeout_seconds,
        total=settings.upstream_total_timeout_seconds,
    )


@dataclass(frozen=True, slots=True)
class OperatorRoute:
    """An UPSTREAMS entry and its client."""

    spec: OperatorUpstream
    upstream: Upstream


class UpstreamPool:
    """Developers' upstreams: one pooled client per origin, made on first use."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._clients: dict[str, Upstream] = {}

    def for_origin(self, url: str) -> Upstream:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        upstream = self._clients.get(origin)
        if upstream is None:
            upstream = Upstream(UpstreamConfig(parts.netloc, origin, timeouts=self.timeouts))
            self._clients[origin] = upstream
        return upstream

    async def close(self) -> None:
        for upstream in self._clients.values():
            await upstream.close()
        self._clients.clear()


@dataclass(slots=True)
class UpstreamContext:
    settings: Settings
    clockchain: Upstream | None
    operators: dict[str, OperatorRoute] = field(default_factory=dict)
    platform: UpstreamPool = field(default_factory=lambda: UpstreamPool(Timeouts()))

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamContext:
        timeouts = timeouts_of(settings)
        operators = {
            spec.name: OperatorRoute(spec, Upstream(_operator_config(spec, timeouts)))
            for spec in settings.upstreams
        }
        return cls(
            settings,
            clockchain.upstream(settings, timeouts),
            operators,
            UpstreamPool(timeouts),
        )

    async def close(self) -> None:
        if self.clockchain is not None:
            await self.clockchain.close()
        for route in self.operators.values():
            await route.upstream.close()
        await self.platform.close()


def _operator_config(spec: OperatorUpstream, timeouts: Timeouts) -> UpstreamConfig:
    return UpstreamConfig(
        name=spec.name,
        base_url=spec.url.rstrip("/") + "/" + spec.prefix.strip("/"),
        inject_headers={k: v.get_secret_value() for k, v in spec.inject_headers.items()},
        timeouts=timeouts,
    )


def upstream_context(request: Request) -> UpstreamContext:
    return cast(UpstreamContext, request.app.state.upstreams)


def identity_of(caller: Caller) -> Identity | None:
    """`X-User-Id` / `X-User-Email` for the upstream, when the caller names a user."""
    if caller.user is None:
        return None
    return Identity(str(caller.user.id), caller.user.email)
