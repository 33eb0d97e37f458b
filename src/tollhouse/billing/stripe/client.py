"""The Stripe port: every call we make to Stripe, through the official SDK, async.

One `stripe.StripeClient` per mode (test, live), each with that mode's secret key; calls on a
platform's connected account pass `stripe_account=acct_…` per request. `STRIPE_API_BASE` and
`STRIPE_CONNECT_BASE` point the SDK elsewhere (the tests' local Stripe peer). Stripe's errors
become our envelope: 502 `stripe_error` with Stripe's message; a mode without a key is 503
`stripe_not_configured`. Results are plain dicts (`to_dict()`), never SDK objects.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast
from urllib.parse import urlencode

import stripe
import structlog
from fastapi import Depends, Request

from tollhouse.billing.stripe.errors import (
    ConnectNotConfigured,
    StripeFailure,
    StripeNotConfigured,
)
from tollhouse.config import Settings

log = structlog.get_logger("tollhouse.stripe")

Mode = Literal["test", "live"]
MODES: tuple[Mode, ...] = ("test", "live")
T = TypeVar("T")


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class ConnectTokens:
    account_id: str
    access_token: str | None
    refresh_token: str | None
    scope: str | None


def _dict(obj: Any) -> dict[str, Any]:
    return cast(dict[str, Any], obj.to_dict())


class StripeGateway:
    """Built once from settings (`app.state.stripe`); stateless apart from the HTTP clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        bases: dict[str, str] = {}
        if settings.stripe_api_base:
            bases["api"] = settings.stripe_api_base.rstrip("/")
        if settings.stripe_connect_base:
            bases["connect"] = settings.stripe_connect_base.rstrip("/")
        self.connect_base = bases.get("connect", stripe.DEFAULT_CONNECT_API_BASE)
        self._http = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        self._clients: dict[Mode, stripe.StripeClient] = {}
        for mode in MODES:
            key = settings.secret(f"stripe_secret_key_{mode}")
            if key:
                self._clients[mode] = stripe.StripeClient(
                    key,
                    base_addresses=cast(Any, bases),
                    max_network_retries=settings.stripe_max_network_retries,
                    http_client=self._http,
                )

    def configured(self, mode: str) -> bool:
        return mode in self._clients

    def _client(self, mode: str) -> stripe.StripeClient:
        client = self._clients.get(cast(Mode, mode))
        if client is None:
            raise StripeNotConfigured()
        return client

    def connect_client_id(self, mode: str) -> str:
        client_id: str | None = getattr(self.settings, f"stripe_connect_client_id_{mode}")
        if not client_id:
            raise ConnectNotConfigured()
        return client_id

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_checkout_session(
        self,
        *,
        mode: Literal["test", "live"],
        account_id: str | None,
        checkout_mode: Literal["subscription", "payment"],
        line_items: list[dict[str, Any]],
        success_url: str,
        cancel_url: str,
        metadata: dict[str, str],
        client_reference_id: str | None = None,
        customer_email: str | None = None,
        customer_id: str | None = None,
        trial_days: int | None = None,
        expires_at: int | None = None,
        automatic_tax: bool = False,
    ) -> CheckoutSession:
        params: dict[str, Any] = {
            "mode": checkout_mode,
            "line_items": line_items,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
        }
        if client_reference_id:
            params["client_reference_id"] = client_reference_id
        if customer_id:
            params["customer"] = customer_id
        elif customer_email:
            params["customer_email"] = customer_email
        if expires_at is not None:
            params["expires_at"] = expires_at
        if automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        if checkout_mode == "subscription":
            subscription_data: dict[str, Any] = {"metadata": metadata}
            if trial_days:
                subscription_data["trial_period_days"] = trial_days
            params["subscription_data"] = subscription_data
        else:
            params["payment_intent_data"] = {"metadata": metadata}
        client = self._client(mode)
        created = await _call(
            client.v1.checkout.sessions.create_async(
                params=cast(Any, params), options=_on(account_id)
            )
        )
        return CheckoutSession(id=created.id, url=cast(str, created.url))

    async def retrieve_checkout_session(
        self, *, mode: str, account_id: str | None, session_id: str, expand_line_items: bool = False
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"expand": ["line_items"]} if expand_line_items else {}
        client = self._client(mode)
        found = await _call(
            client.v1.checkout.sessions.retrieve_async(
                session_id, params=cast(Any, params), options=_on(account_id)
            )
        )
        return _dict(found)

    async def expire_checkout_session(
        self, *, mode: str, account_id: str | None, session_id: str
    ) -> dict[str, Any]:
        client = self._client(mode)
        expired = await _call(
            client.v1.checkout.sessions.expire_async(session_id, options=_on(account_id))
        )
        return _dict(expired)

    async def create_portal_session(
        self, *, mode: str, account_id: str | None, customer_id: str, return_url: str
    ) -> str:
        client = self._client(mode)
        portal = await _call(
            client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": return_url},
                options=_on(account_id),
            )
        )
        return portal.url

    async def retrieve_subscription(
        self, *, mode: str, account_id: str | None, subscription_id: str
    ) -> dict[str, Any]:
        client = self._client(mode)
        found = await _call(
            client.v1.subscriptions.retrieve_async(subscription_id, options=_on(account_id))
        )
        return _dict(found)

    async def create_product(
        self, *, mode: str, account_id: str | None, params: dict[str, Any]
    ) -> str:
        client = self._client(mode)
        product = await _call(
            client.v1.products.create_async(params=cast(Any, params), options=_on(account_id))
        )
        return product.id

    async def update_product(
        self, *, mode: str, account_id: str | None, product_id: str, params: dict[str, Any]
    ) -> None:
        client = self._client(mode)
        await _call(
            client.v1.products.update_async(
                product_id, params=cast(Any, params), options=_on(account_id)
            )
        )

    async def create_price(
        self,
        *,
        mode: str,
        account_id: str | None,
        product_id: str,
        unit_amount: int,
        currency: str,
        recurring_interval: str | None,
    ) -> str:
        params: dict[str, Any] = {
            "product": product_id,
            "unit_amount": unit_amount,
            "currency": currency,
        }
        if recurring_interval:
            params["recurring"] = {"interval": recurring_interval}
        client = self._client(mode)
        price = await _call(
            client.v1.prices.create_async(params=cast(Any, params), options=_on(account_id))
        )
        return price.id

    async def deactivate_price(self, *, mode: str, account_id: str | None, price_id: str) -> None:
        client = self._client(mode)
        await _call(
            client.v1.prices.update_async(
                price_id, params={"active": False}, options=_on(account_id)
            )
        )

    async def create_meter_event(
        self,
        *,
        mode: str,
        event_name: str,
        customer_id: str,
        value: int,
        identifier: str,
        timestamp: int,
    ) -> None:
        """A billing meter event on the operator's own account (never a connected one).

        Stripe rejects a second event with the same `identifier` (unique for at least 24h).
        """
        client = self._client(mode)
        params: dict[str, Any] = {
            "event_name": event_name,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "identifier": identifier,
            "timestamp": timestamp,
        }
        await _call(client.v1.billing.meter_events.create_async(params=cast(Any, params)))

    def authorize_url(self, *, mode: str, state: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.connect_client_id(mode),
                "scope": "read_write",
                "state": state,
                "redirect_uri": redirect_uri,
            }
        )
        return f"{self.connect_base}/oauth/authorize?{query}"

    async def exchange_oauth_code(self, *, mode: str, code: str) -> ConnectTokens:
        """`POST /oauth/token` on the Connect base with the mode's secret key."""
        client = self._client(mode)
        response = await _call(
            client.raw_request_async(
                "post",
                "/oauth/token",
                grant_type="authorization_code",
                code=code,
                base="connect",
            )
        )
        body: dict[str, Any] = json.loads(response.body)
        account_id = body.get("stripe_user_id")
        if not isinstance(account_id, str) or not account_id.startswith("acct_"):
            raise StripeFailure("Stripe's token response named no connected account.")
        return ConnectTokens(
            account_id=account_id,
            access_token=body.get("access_token"),
            refresh_token=body.get("refresh_token"),
            scope=body.get("scope"),
        )


def _on(account_id: str | None) -> Any:
    """Request options: act on the connected account when there is one."""
    return {"stripe_account": account_id} if account_id else {}


async def _call(pending: Awaitable[T]) -> T:
    try:
        return await pending
    except stripe.StripeError as exc:
        message = exc.user_message or str(exc) or StripeFailure.message
        log.warning(
            "stripe_error",
            status=exc.http_status,
            code=exc.code,
            request_id=exc.request_id,
            error_type=type(exc).__name__,
        )
        raise StripeFailure(message, detail={"stripeCode": exc.code}) from None


async def stripe_gateway(request: Request) -> StripeGateway:
    return cast(StripeGateway, request.app.state.stripe)


StripeDep = Annotated[StripeGateway, Depends(stripe_gateway)]
