"""Rate limits as FastAPI dependencies (platform-contract §6, made to actually run).

One bucket per end user when the request names one, else one per key: every end user of a
project gets the project's `rate_limit_per_minute` (default 100) on their own, and a key used
without an end user (a server calling with its secret key, a storefront browsing the catalog)
shares one bucket. Over the limit: 429 `rate_limited`, `Retry-After` (seconds until the
window ends) and `retryAfter` in the body.

The limiter lives on `app.state.rate_limiter` (wiring builds it: memory, or Redis when
`REDIS_URL` is set so every replica counts against the same window).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from tollhouse.identity.caller import Caller, end_user_caller, platform_caller
from tollhouse.metering.errors import RateLimited
from tollhouse.metering.rate_limit import RateLimiter
from tollhouse.tenancy.models import DEFAULT_RATE_LIMIT_PER_MINUTE

WINDOW_SECONDS = 60


def rate_limiter(request: Request) -> RateLimiter:
    return cast(RateLimiter, request.app.state.rate_limiter)


def bucket_of(caller: Caller) -> str:
    """The key a caller's requests are counted under."""
    if caller.user is not None:
        return f"user:{caller.user.id}"
    if caller.key is not None:
        return f"key:{caller.key.key_id}"
    return f"project:{caller.project_id}"


async def limit_attempts(request: Request, bucket: str, limit: int) -> None:
    """Count one attempt in `bucket`; RateLimited (429) beyond `limit` a minute."""
    decision = await rate_limiter(request).hit(bucket, limit, WINDOW_SECONDS)
    if not decision.allowed:
        raise RateLimited(decision.retry_after)


async def enforce_rate_limit(request: Request, caller: Caller) -> None:
    """Count one request for `caller`; RateLimited (429) when over the project's limit."""
    limit = caller.key.rate_limit_per_minute if caller.key is not None else None
    await limit_attempts(request, bucket_of(caller), limit or DEFAULT_RATE_LIMIT_PER_MINUTE)


async def rate_limited_platform_caller(request: Request) -> Caller:
    caller = await platform_caller(request)
    await enforce_rate_limit(request, caller)
    return caller


async def rate_limited_end_user(request: Request) -> Caller:
    """An end user of the project (token required), within the project's rate limit."""
    caller = await end_user_caller(request)
    await enforce_rate_limit(request, caller)
    return caller


RateLimitedPlatformCaller = Annotated[Caller, Depends(rate_limited_platform_caller)]
RateLimitedEndUser = Annotated[Caller, Depends(rate_limited_end_user)]
