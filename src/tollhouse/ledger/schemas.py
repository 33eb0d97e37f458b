"""Bodies of the credits routes (flash-contract §1.6 and §1.8 shapes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, Field, StringConstraints, field_validator

from tollhouse.identity.models import EXTERNAL_ID_MAX

# Whole credits only; 2^31 - 1 keeps every amount inside what any client's int can hold.
MAX_AMOUNT = 2**31 - 1
Amount = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]
Cost = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
UserReference = Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_MAX)]
Description = Annotated[str, StringConstraints(max_length=500)]
GrantType = Literal[
    "signup_bonus",
    "admin_grant",
    "apple_iap",
    "stripe_purchase",
    "subscription_grant",
    "refund",
]
SpendType = Literal["generation", "chat", "temporal"]


class BalanceResponse(BaseModel):
    balance: int
    lifetime_earned: int
    lifetime_spent: int


class TransactionOut(BaseModel):
    id: int
    amount: int
    balance_after: int
    type: str
    reference_id: str | None
    description: str | None
    created_at: datetime


class CostsResponse(BaseModel):
    costs: dict[str, int]


class AdminGrantRequest(BaseModel):
    user_id: UserReference
    amount: Amount
    # flash-contract §8.4 #9, lenient on purpose: a type that is not a grant's is written as
    # `admin_grant` rather than refused.
    transaction_type: Annotated[str, StringConstraints(max_length=64)] = "admin_grant"
    description: Description = "Manual top-up"

    @field_validator("transaction_type")
    @classmethod
    def _known_or_admin_grant(cls, value: str) -> str:
        return value if value in get_args(GrantType) else "admin_grant"


class AdminGrantResponse(BaseModel):
    balance: int
    granted: int


class CostOverridesRequest(BaseModel):
    project_id: str | None = Field(None, max_length=40, description="Defaults to the home project.")
    costs: dict[Annotated[str, StringConstraints(max_length=64)], Cost]


class InternalGrantRequest(BaseModel):
    user_id: UserReference
    amount: Amount
    transaction_type: GrantType
    description: Description | None = None
    # What the grant is for (a purchase's transaction id), as refunds look it up.
    reference_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class InternalSpendRequest(BaseModel):
    user_id: UserReference
    cost: Amount
    transaction_type: SpendType = "generation"
    description: Description | None = None


class InternalResult(BaseModel):
    success: bool
    transaction_id: int | None
    balance_after: int | None
    error: str | None = None


class CheckResponse(BaseModel):
    sufficient: bool
    balance: int


class MismatchOut(BaseModel):
    account_id: uuid.UUID
    user_id: uuid.UUID
    problem: str
    expected: int
    actual: int
    transaction_id: int | None


class AuditResponse(BaseModel):
    ok: bool
    accounts_checked: int
    transactions_checked: int
    mismatches: list[MismatchOut]
