"""The home project's catalogue: credit packs and subscriptions, from BILLING_PRODUCTS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tollhouse.config import (
    BillingProductsConfig,
    CreditPackConfig,
    Settings,
    SubscriptionPlanConfig,
)

ProductKind = Literal["credit_pack", "subscription"]

DEFAULT_PRODUCTS = BillingProductsConfig(
    credit_packs=[
        CreditPackConfig(
            id="credits_100", name="100 credits", credits=100, price_cents=499,
            apple_product_id="credits_100",
        ),
        CreditPackConfig(
            id="credits_500", name="500 credits", credits=500, price_cents=1999,
            apple_product_id="credits_500",
        ),
        CreditPackConfig(
            id="credits_1500", name="1,500 credits", credits=1500, price_cents=4999,
            apple_product_id="credits_1500",
        ),
    ],
    subscriptions=[
        SubscriptionPlanConfig(
            id="pro_monthly", name="Pro (monthly)", credits_per_month=1000, interval="month",
            price_cents=1499, apple_product_id="pro_monthly", tier="pro",
        ),
        SubscriptionPlanConfig(
            id="pro_yearly", name="Pro (yearly)", credits_per_month=1000, interval="year",
            price_cents=14999, apple_product_id="pro_yearly", tier="pro",
        ),
    ],
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Product:
    """One thing a user can buy, with the credits one grant of it gives."""

    id: str
    kind: ProductKind
    name: str
    credits: int
    price_cents: int
    currency: str
    interval: Literal["month", "year"] | None
    apple_product_id: str | None
    stripe_price_id: str | None
    tier: str | None = None

    @property
    def ledger_type(self) -> str:
        return "apple_iap" if self.kind == "credit_pack" else "subscription_grant"


class Catalogue:
    def __init__(self, config: BillingProductsConfig) -> None:
        packs = [_pack(p) for p in config.credit_packs]
        plans = [_plan(p) for p in config.subscriptions]
        self.products: tuple[Product, ...] = (*packs, *plans)
        self._by_id = {p.id: p for p in self.products}
        self._by_apple = {p.apple_product_id: p for p in self.products if p.apple_product_id}

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalogue:
        return cls(settings.billing_products or DEFAULT_PRODUCTS)

    def get(self, product_id: str) -> Product | None:
        return self._by_id.get(product_id)

    def by_apple_id(self, apple_product_id: str) -> Product | None:
        return self._by_apple.get(apple_product_id)

    def yearly_plan_ids(self) -> list[str]:
        return [p.id for p in self.products if p.interval == "year"]


def _pack(config: CreditPackConfig) -> Product:
    return Product(
        id=config.id,
        kind="credit_pack",
        name=config.name,
        credits=config.credits,
        price_cents=config.price_cents,
        currency=config.currency.lower(),
        interval=None,
        apple_product_id=config.apple_product_id,
        stripe_price_id=config.stripe_price_id,
    )


def _plan(config: SubscriptionPlanConfig) -> Product:
    return Product(
        id=config.id,
        kind="subscription",
        name=config.name,
        credits=config.credits_per_month,
        price_cents=config.price_cents,
        currency=config.currency.lower(),
        interval=config.interval,
        apple_product_id=config.apple_product_id,
        stripe_price_id=config.stripe_price_id,
        tier=config.tier or config.id,
    )
