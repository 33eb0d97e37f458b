"""Metering's refusals. Quota and rate-limit bodies also carry the top-level fields
(`usageCount`, `limit`, `retryAfter`) that the Platform API SDKs read."""

from __future__ import annotations

from tollhouse.kit.errors import Forbidden, TollhouseError


class QuotaExceeded(Forbidden):
    code = "tier_limit_reached"

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(
            f"Tier limit reached: {count} of {limit} units used this period.",
            extra={"usageCount": count, "limit": limit},
        )
        self.count = count
        self.limit = limit


class UnknownPlan(Forbidden):
    code = "unknown_plan"

    def __init__(self, plan: str) -> None:
        super().__init__(
            f"Unknown plan {plan!r}: this project has no subscription tier with that slug."
        )
        self.plan = plan


class RateLimited(TollhouseError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests. Try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
            extra={"retryAfter": retry_after},
        )
        self.retry_after = retry_after
