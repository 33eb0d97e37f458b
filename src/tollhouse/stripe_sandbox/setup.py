"""What a server needs to sell through the sandbox: its Stripe settings, and the prices its
catalogue names, created in the sandbox.

The sandbox accepts any `sk_test_…` / `sk_live_…` key; the webhook secrets are fresh for each
start (the sandbox and the server learn them from here, nothing is written down). Catalogue
products without a Stripe price get `price_sandbox_<product id>`, so the default catalogue
can be bought on a fresh machine.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import SecretStr

from tollhouse.billing.gateway.products import DEFAULT_PRODUCTS
from tollhouse.config import BillingProductsConfig, ConfigError, Settings
from tollhouse.stripe_sandbox.state import Sandbox

REFUSAL = (
    "refusing to start with TOLLHOUSE_ENV=production: the Stripe sandbox (STRIPE_SANDBOX, "
    "`tollhouse stripe-sandbox`) is a local stand-in for development only"
)
SECRET_KEYS = {"test": "sk_test_sandbox", "live": "sk_live_sandbox"}
CONNECT_CLIENT_IDS = {"test": "ca_sandbox_test", "live": "ca_sandbox_live"}


def refuse_in_production(settings: Settings) -> None:
    if settings.is_production:
        raise ConfigError(REFUSAL)


def priced_catalogue(settings: Settings) -> BillingProductsConfig:
    """The catalogue, every product with a Stripe price id (`price_sandbox_<id>` if none)."""
    catalogue = settings.billing_products or DEFAULT_PRODUCTS
    return catalogue.model_copy(
        update={
            "credit_packs": [
                p.model_copy(
                    update={"stripe_price_id": p.stripe_price_id or f"price_sandbox_{p.id}"}
                )
                for p in catalogue.credit_packs
            ],
            "subscriptions": [
                p.model_copy(
                    update={"stripe_price_id": p.stripe_price_id or f"price_sandbox_{p.id}"}
                )
                for p in catalogue.subscriptions
            ],
        }
    )


def seed(sandbox: Sandbox, catalogue: BillingProductsConfig) -> None:
    """The catalogue's prices on the operator's account (the home project sells in live mode)."""
    for pack in catalogue.credit_packs:
        assert pack.stripe_price_id is not None
        sandbox.add_price(
            pack.price_cents, price_id=pack.stripe_price_id, name=pack.name, livemode=True
        )
    for plan in catalogue.subscriptions:
        assert plan.stripe_price_id is not None
        sandbox.add_price(
            plan.price_cents,
            interval=plan.interval,
            price_id=plan.stripe_price_id,
            name=plan.name,
            livemode=True,
        )


def webhook_secrets() -> dict[str, str]:
    return {mode: f"whsec_sandbox_{secrets.token_hex(16)}" for mode in ("test", "live")}


def server_settings(settings: Settings, base_url: str, whsec: dict[str, str]) -> dict[str, Any]:
    """The Stripe settings that point a server at the sandbox (as Settings field values)."""
    values: dict[str, Any] = {"stripe_api_base": base_url, "stripe_connect_base": base_url}
    for mode in ("test", "live"):
        values[f"stripe_secret_key_{mode}"] = SecretStr(SECRET_KEYS[mode])
        values[f"stripe_webhook_secret_{mode}"] = SecretStr(whsec[mode])
        values[f"stripe_connect_client_id_{mode}"] = CONNECT_CLIENT_IDS[mode]
    values["billing_products"] = priced_catalogue(settings)
    return values
