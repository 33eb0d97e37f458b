"""The clockchain (flash-contract §1.8, §9) behind /api/v1/clockchain/*.

`/api/v1/clockchain/{path}` → `{CLOCKCHAIN_SERVICE_URL}/api/v1/{path}` with
`X-Service-Key: CLOCKCHAIN_SERVICE_KEY` and the caller's `X-User-Id`/`X-User-Email`. Reads are
free; `ingest/*` costs `clockchain_ingest` and `index` costs `clockchain_index` (held,
captured when the clockchain answered below 500, released otherwise). Its answers are JSON:
anything else is 502 `upstream_malformed`.
"""

from __future__ import annotations

import httpx

from tollhouse.config import Settings
from tollhouse.kit.forwarding import Timeouts, Upstream, UpstreamConfig

PREFIX = "/api/v1/clockchain"
NAME = "clockchain"


def upstream(settings: Settings, timeouts: Timeouts) -> Upstream | None:
    """The clockchain's client, or None when it is switched off or not configured."""
    url = settings.clockchain_service_url
    if not settings.clockchain_enabled or not url:
        return None
    key = settings.secret("clockchain_service_key")
    return Upstream(
        UpstreamConfig(
            name=NAME,
            base_url=f"{url.rstrip('/')}/api/v1",
            inject_headers={"X-Service-Key": key} if key else {},
            timeouts=timeouts,
        )
    )


async def healthy(clockchain: Upstream, settings: Settings) -> bool:
    """The clockchain's root `/health` answers 200 within the health timeout."""
    assert settings.clockchain_service_url is not None
    try:
        response = await clockchain.client.get(
            f"{settings.clockchain_service_url.rstrip('/')}/health",
            timeout=settings.upstream_health_timeout_seconds,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200
