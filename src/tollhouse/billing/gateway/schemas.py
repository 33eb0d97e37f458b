"""Bodies of /api/v1/billing/* and /webhook/apple."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# A StoreKit 2 signed transaction is a few KB (three certificates and the payload).
MAX_SIGNED_TRANSACTION = 16 * 1024
# A notification carries the transaction and the renewal info inside its own JWS.
MAX_SIGNED_NOTIFICATION = 64 * 1024


class ProductOut(BaseModel):
    id: str
    type: Literal["credit_pack", "subscription"]
    name: str
    # What one grant gives: a pack's credits, or a subscription's credits per month.
    credits: int
    credits_per_month: int | None
    interval: Literal["month", "year"] | None
    price_cents: int
    currency: str
    apple_product_id: str | None
    stripe_price_id: str | None


class ProductsResponse(BaseModel):
    products: list[ProductOut]


class SubscriptionOut(BaseModel):
    provider: Literal["stripe", "apple"]
    product_id: str
    status: str
    credits_per_month: int | None
    current_period_end: datetime | None
    cancel_at_period_end: bool = False


class PurchaseOut(BaseModel):
    transaction_id: int
    type: str
    amount: int
    balance_after: int
    reference_id: str | None
    description: str | None
    created_at: datetime


class AccountFlag(BaseModel):
    unrecovered_credits: int
    reason: str | None


class StatusResponse(BaseModel):
    user_id: str
    # What clients branch on (timepoint-mcp's tier resolver): the live subscription's tier
    # and status, or "free" / "none" without one.
    subscription_tier: str
    status: str
    balance: int
    lifetime_earned: int
    lifetime_spent: int
    subscription: SubscriptionOut | None
    recent_purchases: list[PurchaseOut]
    # Set when a refund could not take back credits that were already spent.
    flag: AccountFlag | None


class AppleVerifyRequest(BaseModel):
    signed_transaction: str = Field(min_length=1, max_length=MAX_SIGNED_TRANSACTION)


class AppleVerifyResponse(BaseModel):
    granted: int = Field(description="Credits granted by this call (0 when already granted).")
    balance: int
    transaction_id: str
    product_id: str
    already_verified: bool


class AppleNotificationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    signedPayload: str = Field(min_length=1, max_length=MAX_SIGNED_NOTIFICATION)
