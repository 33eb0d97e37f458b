"""The Platform API's JSON shapes, as `@dream-api/sdk` reads them (platform-contract §1.2, §4).

camelCase keys, prices in integer cents, `limit`/`remaining` a number or `"unlimited"`,
timestamps as ISO 8601 strings. Plain dicts: these sit on the hot path of `POST /api/data`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollhouse.catalog.models import Tier
from tollhouse.identity.models import User
from tollhouse.kit.clock import epoch_ms
from tollhouse.ledger.models import CreditAccount, CreditTransaction
from tollhouse.ledger.service import Entry
from tollhouse.metering.quota import Usage

UNLIMITED = "unlimited"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def limit_value(limit: int | None) -> int | str:
    return UNLIMITED if limit is None else limit


def sold_out(tier: Tier) -> bool:
    return tier.inventory is not None and tier.inventory <= 0


def tier(row: Tier) -> dict[str, Any]:
    return {
        "id": row.slug,
        "name": row.display_name,
        "displayName": row.display_name,
        "price": row.price_cents,
        "currency": row.currency,
        "limit": limit_value(row.limit),
        "features": list(row.features or []),
        "description": row.description,
        "billingMode": row.billing_mode,
        "imageUrl": row.image_url,
        "inventory": row.inventory,
        "soldOut": sold_out(row),
        "popular": row.popular,
        "priceId": row.stripe_price_id,
        "stripePriceId": row.stripe_price_id,
        "productId": row.stripe_product_id,
        "trialDays": row.trial_days,
    }


def product(row: Tier) -> dict[str, Any]:
    return {
        "id": row.stripe_product_id or row.slug,
        "key": row.slug,
        "name": row.display_name,
        "displayName": row.display_name,
        "description": row.description,
        "price": row.price_cents,
        "currency": row.currency or "usd",
        "imageUrl": row.image_url,
        "inventory": row.inventory,
        "soldOut": sold_out(row),
        "priceId": row.stripe_price_id,
        "productId": row.stripe_product_id,
        "features": list(row.features or []),
    }


def usage(standing: Usage, user: User) -> dict[str, Any]:
    """The `usage` object of `POST /api/data`: the original's `count`, and the SDK's
    `usageCount` and `userId` beside it."""
    return {
        "count": standing.count,
        "usageCount": standing.count,
        "userId": user.external_id,
        "limit": limit_value(standing.limit),
        "plan": standing.plan,
        "remaining": limit_value(standing.remaining),
        "periodStart": iso(standing.period_start),
        "periodEnd": iso(standing.period_end),
    }


def usage_report(user: User, standing: Usage) -> dict[str, Any]:
    """`GET /api/usage`: flat, as the original answers (its docs said wrapped; code wins)."""
    return {
        "userId": user.external_id,
        "plan": standing.plan,
        "usageCount": standing.count,
        "limit": limit_value(standing.limit),
        "remaining": limit_value(standing.remaining),
        "periodStart": iso(standing.period_start),
        "periodEnd": iso(standing.period_end),
    }


def customer(user: User, plan: str, publishable_key: str | None) -> dict[str, Any]:
    return {
        "id": user.external_id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "plan": plan,
        "publishableKey": publishable_key,
        # Epoch milliseconds, as the SDK's Customer type declares.
        "createdAt": epoch_ms(user.created_at),
    }


def credits(account: CreditAccount) -> dict[str, Any]:
    return {
        "balance": account.balance,
        "lifetimeEarned": account.lifetime_earned,
        "lifetimeSpent": account.lifetime_spent,
    }


def transaction(row: CreditTransaction | Entry) -> dict[str, Any]:
    return {
        "id": row.id,
        "amount": row.amount,
        "balanceAfter": row.balance_after,
        "type": row.type,
        "description": row.description,
        "createdAt": iso(row.created_at),
    }
