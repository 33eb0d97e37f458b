"""The gateway's /api/v1/billing/* forwarded to a separate billing process (`--role billing`).

Auth happens here (the same `home_user` as in-process); billing receives the resolved user as
`X-User-Id`/`X-User-Email` with `X-Service-Key: BILLING_API_KEY` at `/internal/billing/*`.
Billing answers in our envelope already, so its status and body pass through unchanged.
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request, Response

from tollhouse.billing.gateway.routes import HomeUser
from tollhouse.identity.models import User
from tollhouse.kit.errors import ServiceUnavailable, TollhouseError
from tollhouse.kit.forwarding import (
    Timeouts,
    Upstream,
    UpstreamConfig,
    UpstreamTimeout,
    UpstreamUnavailable,
    prepare,
)
from tollhouse.kit.proxy_headers import Identity


class BillingUnavailable(ServiceUnavailable):
    code = "billing_unavailable"
    message = "The billing service is unavailable."


class BillingTimeout(TollhouseError):
    status_code = 504
    code = "billing_timeout"
    message = "The billing service did not answer in time."


class BillingProxy:
    """`{BILLING_SERVICE_URL}/internal/billing` as an upstream of kit's forwarding engine."""

    def __init__(
        self,
        base_url: str,
        service_key: str,
        *,
        timeout: float,
    ) -> None:
        config = UpstreamConfig(
            name="billing",
            base_url=f"{base_url.rstrip('/')}/internal/billing",
            inject_headers={"X-Service-Key": service_key},
            timeouts=Timeouts(connect=min(timeout, 5.0), read=timeout, total=timeout),
        )
        self.upstream = Upstream(config)

    async def forward(self, request: Request, path: str, user: User | None) -> Response:
        identity = None if user is None else Identity(str(user.id), user.email)
        outgoing = prepare(
            request, path, identity=identity, injected=self.upstream.config.inject_headers
        )
        try:
            return await self.upstream.forward(request, outgoing)
        except UpstreamTimeout as exc:
            raise BillingTimeout() from exc
        except UpstreamUnavailable as exc:
            raise BillingUnavailable(detail=exc.detail) from exc

    async def close(self) -> None:
        await self.upstream.close()


def _proxy(request: Request) -> BillingProxy:
    return cast(BillingProxy, request.app.state.billing_proxy)


router = APIRouter(prefix="/api/v1/billing", tags=["billing"])


@router.get("/products")
async def products(request: Request) -> Response:
    return await _proxy(request).forward(request, "/products", None)


@router.get("/status")
async def billing_status(request: Request, user: HomeUser) -> Response:
    return await _proxy(request).forward(request, "/status", user)


@router.post("/apple/verify")
async def apple_verify(request: Request, user: HomeUser) -> Response:
    return await _proxy(request).forward(request, "/apple/verify", user)


@router.post("/stripe/checkout")
async def stripe_checkout(request: Request, user: HomeUser) -> Response:
    return await _proxy(request).forward(request, "/stripe/checkout", user)


@router.get("/stripe/portal")
async def stripe_portal(request: Request, user: HomeUser) -> Response:
    return await _proxy(request).forward(request, "/stripe/portal", user)
