"""Signup credits: every new user starts with an account and a logged welcome bonus."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity.models import User
from tollhouse.identity.service import UserCreatedHook, was_erased_before
from tollhouse.ledger import service


def signup_grant(credits: int, pepper: str) -> UserCreatedHook:
    """`pepper` reads the tombstones of erased ids (`identity.service.was_erased_before`)."""

    async def grant_signup_credits(session: AsyncSession, user: User) -> None:
        account = await service.ensure_account(session, user)
        # An erased user's id signing up again is the same person: erasing must not farm
        # welcome bonuses.
        if credits > 0 and not await was_erased_before(session, user, pepper):
            # The fixed idempotency key makes a second welcome bonus impossible.
            await service.grant(
                session,
                account.id,
                credits,
                "signup_bonus",
                description="Welcome bonus",
                idempotency_key=service.SIGNUP_IDEMPOTENCY_KEY,
            )

    return grant_signup_credits
