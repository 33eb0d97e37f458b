"""Stripe Connect per platform and mode (platform-contract §3.2), done safely.

- The OAuth `state` is random, stored only as a keyed hash, valid 10 minutes, and consumed by
  one conditional UPDATE (`used_at IS NULL AND expires_at > now`): a second use, or a state
  of another platform, is 400 `invalid_oauth_state`.
- The account's tokens are encrypted at rest (`kit.crypto.encrypt`, a key derived from the
  pepper); status answers never carry them.
- One connection per (platform, mode); connecting again replaces it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.billing.models import OAuthState, StripeConnection
from tollhouse.billing.stripe.client import MODES, StripeGateway
from tollhouse.billing.stripe.errors import InvalidOAuthState, StripeNotConnected
from tollhouse.db.dialect import upsert
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import encrypt, keyed_hash, random_token

STATE_TTL = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Connected:
    platform_id: str
    mode: str
    account_id: str


def _state_hash(pepper: str, state: str) -> str:
    return keyed_hash(pepper, "stripe-connect-state:" + state)


async def start(
    session: AsyncSession,
    gateway: StripeGateway,
    pepper: str,
    *,
    platform_id: str,
    mode: str,
    redirect_uri: str,
) -> str:
    """The Stripe authorize URL to send the developer to (a fresh single-use state)."""
    gateway.connect_client_id(mode)  # 503 before anything is stored when Connect is off
    state = random_token(32)
    session.add(
        OAuthState(
            state_hash=_state_hash(pepper, state),
            platform_id=platform_id,
            mode=mode,
            expires_at=utcnow() + STATE_TTL,
        )
    )
    await session.flush()
    return gateway.authorize_url(mode=mode, state=state, redirect_uri=redirect_uri)


async def _consume_state(session: AsyncSession, pepper: str, state: str, platform_id: str) -> str:
    """The state's mode, once: marks it used in the same statement that checks it."""
    now = utcnow()
    mode = await session.scalar(
        update(OAuthState)
        .where(
            OAuthState.state_hash == _state_hash(pepper, state),
            OAuthState.platform_id == platform_id,
            OAuthState.used_at.is_(None),
            OAuthState.expires_at > now,
        )
        .values(used_at=now)
        .returning(OAuthState.mode)
    )
    if mode is None:
        raise InvalidOAuthState()
    return str(mode)


async def finish(
    session: AsyncSession,
    gateway: StripeGateway,
    pepper: str,
    *,
    platform_id: str,
    code: str,
    state: str,
) -> Connected:
    """Exchange the code for the account's tokens and store them (encrypted)."""
    mode = await _consume_state(session, pepper, state, platform_id)
    tokens = await gateway.exchange_oauth_code(mode=mode, code=code)
    values: dict[str, Any] = {
        "account_id": tokens.account_id,
        "access_token_encrypted": _sealed(pepper, tokens.access_token),
        "refresh_token_encrypted": _sealed(pepper, tokens.refresh_token),
        "scope": tokens.scope,
        "updated_at": utcnow(),
    }
    await session.execute(
        upsert(session, StripeConnection, ["platform_id", "mode"], values).values(
            platform_id=platform_id, mode=mode, **values
        )
    )
    return Connected(platform_id, mode, tokens.account_id)


def _sealed(pepper: str, token: str | None) -> str | None:
    return encrypt(pepper, token) if token else None


async def connection(session: AsyncSession, platform_id: str, mode: str) -> StripeConnection | None:
    return await session.scalar(
        select(StripeConnection).where(
            StripeConnection.platform_id == platform_id, StripeConnection.mode == mode
        )
    )


async def connected_account_counts(session: AsyncSession) -> dict[str, int]:
    """How many platforms have connected a Stripe account, per mode (the operator's view)."""
    rows = await session.execute(
        select(StripeConnection.mode, func.count()).group_by(StripeConnection.mode)
    )
    return {str(mode): int(count) for mode, count in rows.all()}


async def account_of(session: AsyncSession, platform_id: str, mode: str) -> str:
    """The connected account to sell on; 400 `stripe_not_connected` without one."""
    found = await connection(session, platform_id, mode)
    if found is None:
        raise StripeNotConnected()
    return found.account_id


async def status(session: AsyncSession, gateway: StripeGateway, platform_id: str) -> dict[str, Any]:
    """Per mode: connected or not, the account id, when — never a token."""
    rows = await session.scalars(
        select(StripeConnection).where(StripeConnection.platform_id == platform_id)
    )
    by_mode = {row.mode: row for row in rows}
    out: dict[str, Any] = {}
    for mode in MODES:
        row = by_mode.get(mode)
        out[mode] = {
            "configured": gateway.configured(mode),
            "connected": row is not None,
            "accountId": row.account_id if row else None,
            "scope": row.scope if row else None,
            "connectedAt": row.updated_at.isoformat() if row else None,
        }
    return out


async def disconnect(session: AsyncSession, platform_id: str, mode: str) -> bool:
    """Forget the mode's connection (Stripe keeps the account; the developer can revoke
    our access from their Stripe dashboard)."""
    result = await session.execute(
        delete(StripeConnection)
        .where(StripeConnection.platform_id == platform_id, StripeConnection.mode == mode)
        .returning(StripeConnection.id)
    )
    return result.first() is not None


def live_payments_ready(gateway: StripeGateway) -> Callable[[AsyncSession, str], Awaitable[bool]]:
    """Promote's check: ready unless live Stripe is configured and the platform has no live
    connection (with no live key at all, promotion is allowed and the project cannot sell)."""

    async def check(session: AsyncSession, platform_id: str) -> bool:
        if not gateway.configured("live"):
            return True
        return await connection(session, platform_id, "live") is not None

    return check
