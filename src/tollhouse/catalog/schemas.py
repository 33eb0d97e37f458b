"""Tier and product bodies: the validation every writer (HTTP, CLI) goes through."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from tollhouse.catalog.models import Tier

MAX_PRICE_CENTS = 100_000_000  # one million in the currency's major unit
MAX_COUNT = 2_000_000_000  # fits the 32-bit integer columns
MAX_TRIAL_DAYS = 730
MAX_FEATURES = 50

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Feature = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ImageUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=1000, pattern=r"^https?://\S+$")
]
PriceCents = Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
# A usage limit: a count, or "unlimited" (stored as null, as is an explicit null).
Limit = Count | Literal["unlimited"] | None
TrialDays = Annotated[int, Field(ge=0, le=MAX_TRIAL_DAYS)]
Period = Literal["rolling_30d", "calendar_month"]
BillingMode = Literal["subscription", "one_off"]


class _TierFields(BaseModel):
    # Strict: "5" is not a price and true is not a limit.
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("limit", check_fields=False)
    @classmethod
    def _unlimited_is_null(cls, value: Any) -> Any:
        return None if value == "unlimited" else value


class TierCreate(_TierFields):
    name: Name
    display_name: DisplayName | None = None
    price_cents: PriceCents = 0
    limit: Limit = None
    period: Period = "rolling_30d"
    # Defaults to what the project's type allows.
    billing_mode: BillingMode | None = None
    features: Annotated[list[Feature], Field(max_length=MAX_FEATURES)] = []
    description: Description | None = None
    image_url: ImageUrl | None = None
    inventory: Count | None = None
    popular: bool = False
    trial_days: TrialDays = 0


class TierUpdate(_TierFields):
    """A partial update: only the fields present change; null clears limit/inventory."""

    display_name: DisplayName | None = None
    price_cents: PriceCents | None = None
    limit: Limit = None
    period: Period | None = None
    billing_mode: BillingMode | None = None
    features: Annotated[list[Feature], Field(max_length=MAX_FEATURES)] | None = None
    description: Description | None = None
    image_url: ImageUrl | None = None
    inventory: Count | None = None
    popular: bool | None = None
    trial_days: TrialDays | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent; nulls only where null means something."""
        nullable = {"limit", "inventory", "description", "image_url"}
        sent = self.model_dump(include=self.model_fields_set)
        return {k: v for k, v in sent.items() if v is not None or k in nullable}


class TierOut(BaseModel):
    id: str
    slug: str
    display_name: str
    description: str | None
    price_cents: int
    currency: str
    limit: int | Literal["unlimited"]
    period: str
    billing_mode: str
    features: list[str]
    image_url: str | None
    inventory: int | None
    sold_out: bool
    popular: bool
    trial_days: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, tier: Tier) -> TierOut:
        return cls(
            id=tier.id,
            slug=tier.slug,
            display_name=tier.display_name,
            description=tier.description,
            price_cents=tier.price_cents,
            currency=tier.currency,
            limit="unlimited" if tier.limit is None else tier.limit,
            period=tier.period,
            billing_mode=tier.billing_mode,
            features=list(tier.features or []),
            image_url=tier.image_url,
            inventory=tier.inventory,
            sold_out=tier.inventory is not None and tier.inventory <= 0,
            popular=tier.popular,
            trial_days=tier.trial_days,
            created_at=tier.created_at,
            updated_at=tier.updated_at,
        )
