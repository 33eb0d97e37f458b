"""Calls we make to the clockchain ourselves (not on a caller's behalf through the proxy):
figure search and grounding, today's moments, moment listings (flash-contract §7, §9).

Every call sends `X-Service-Key` (CLOCKCHAIN_SERVICE_KEY) and, when one is known, the user's
`X-User-ID`. Failures raise `ClockchainUnavailable`; callers decide whether to degrade
(search and content answer with what they have) or refuse (re-grounding).
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

import aiohttp
from fastapi import Request

from tollhouse.kit.errors import ServiceUnavailable
from tollhouse.kit.forwarding import Upstream
from tollhouse.upstreams.context import upstream_context


class ClockchainUnavailable(ServiceUnavailable):
    code = "clockchain_unavailable"
    message = "The clockchain is not configured or did not answer."


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class ClockchainClient:
    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def _call(
        self,
        method: str,
        path: str,
        *,
        user_id: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        headers = dict(self._upstream.config.inject_headers)
        if user_id:
            headers["X-User-ID"] = user_id
        url = self._upstream.config.base_url.rstrip("/") + path
        session = self._upstream.session  # the proxy's pooled client (kit/forwarding.py)
        try:
            async with session.request(
                method,
                url,
                params=params,
                json=json,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._upstream.config.timeouts.total),
            ) as response:
                if response.status >= 400:
                    raise ClockchainUnavailable(
                        f"The clockchain answered {response.status} to {method} {path}."
                    )
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ClockchainUnavailable(f"The clockchain did not answer: {exc}") from exc
        try:
            return jsonlib.loads(body)
        except ValueError as exc:
            raise ClockchainUnavailable("The clockchain's answer is not JSON.") from exc

    async def search_figures(
        self, query: str, *, entity_type: str | None, limit: int, user_id: str | None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"q": query, "limit": limit}
        if entity_type:
            params["entity_type"] = entity_type
        found = await self._call("GET", "/figures/search", params=params, user_id=user_id)
        results = found.get("results", found) if isinstance(found, dict) else found
        return (
            [item for item in results if isinstance(item, dict)]
            if isinstance(results, list)
            else []
        )

    async def figure(self, figure_id: str) -> dict[str, Any]:
        found = await self._call("GET", f"/figures/{figure_id}")
        if not isinstance(found, dict):
            raise ClockchainUnavailable("The clockchain's figure is not an object.")
        return found

    async def ground_figure(self, figure_id: str, grounding: dict[str, Any]) -> None:
        await self._call("PATCH", f"/figures/{figure_id}/ground", json=grounding)

    async def today(self) -> list[dict[str, Any]]:
        found = await self._call("GET", "/today")
        return _objects(found.get("events") if isinstance(found, dict) else None)

    async def moments(self, **params: Any) -> list[dict[str, Any]]:
        found = await self._call("GET", "/moments", params=params)
        return _objects(found.get("items") if isinstance(found, dict) else None)


def clockchain_client(request: Request) -> ClockchainClient | None:
    """None when the clockchain is switched off or not configured."""
    relay = upstream_context(request).clockchain
    return ClockchainClient(relay.upstream) if relay is not None else None
