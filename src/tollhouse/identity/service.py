"""Identity rules: find-or-create users, sign-ins, token pairs and their rotation.

Functions flush, never commit: the request's unit of work decides.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.config import Settings
from tollhouse.identity import repository
from tollhouse.identity.end_user_tokens import EndUserClaims
from tollhouse.identity.errors import (
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenExpired,
    RefreshTokenReused,
    UserDeactivated,
    UserInactive,
    UserNotFound,
)
from tollhouse.identity.issuers import ExternalIdentity
from tollhouse.identity.models import EXTERNAL_ID_MAX, RefreshToken, User
from tollhouse.identity.tokens import hash_refresh_token, issue_access_token, new_refresh_token
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import keyed_hash

# Other domains react to a new user in the same transaction (the ledger grants signup
# credits); the app wires them in, so identity never imports a domain above it.
UserCreatedHook = Callable[[AsyncSession, User], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TokenSettings:
    secret: str
    pepper: str
    access_minutes: int
    refresh_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSettings:
        return cls(
            secret=settings.secret("jwt_secret_key") or "",
            pepper=settings.secret("tollhouse_secret_pepper") or "",
            access_minutes=settings.jwt_access_expire_minutes,
            refresh_days=settings.jwt_refresh_expire_days,
        )


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type


async def resolve_user(
    session: AsyncSession,
    project_id: str,
    external_id: str,
    *,
    email: str | None = None,
    display_name: str | None = None,
    hooks: Sequence[UserCreatedHook] = (),
) -> tuple[User, bool]:
    """Find or create the user with this external id; safe when many first calls race."""
    new_id = await repository.insert_user_if_absent(
        session, project_id, external_id, email, display_name
    )
    user = await repository.user_by_external_id(session, project_id, external_id)
    assert user is not None, "the insert or a concurrent one must have created the user"
    if not user.is_active:
        raise UserDeactivated()
    created = new_id is not None
    if created:
        for hook in hooks:
            await hook(session, user)
    else:
        user.email = email or user.email
        user.display_name = display_name or user.display_name
    user.last_login_at = utcnow()
    await session.flush()
    return user, created


async def sign_in_external(
    session: AsyncSession,
    project_id: str,
    identity: ExternalIdentity,
    hooks: Sequence[UserCreatedHook] = (),
) -> User:
    if len(identity.external_id) > EXTERNAL_ID_MAX:
        raise InvalidToken("Invalid access token: the subject is too long")
    user, _ = await resolve_user(
        session,
        project_id,
        identity.external_id,
        email=identity.email,
        display_name=identity.display_name,
        hooks=hooks,
    )
    return user


async def find_user(session: AsyncSession, project_id: str, reference: str) -> User:
    """An active user by id or external id, or 404 telling the caller how to create one."""
    user = await repository.user_by_reference(session, project_id, reference)
    if user is None or not user.is_active:
        raise UserNotFound(
            f"User {reference[:64]} not found. Call POST /api/v1/users/resolve first."
        )
    return user


async def active_user_by_id(session: AsyncSession, project_id: str, user_id: uuid.UUID) -> User:
    user = await repository.user_by_id(session, project_id, user_id)
    if user is None or not user.is_active:
        raise UserInactive()
    return user


async def reload(session: AsyncSession, user: User) -> User:
    """The caller's user as this session sees it now: load before changing a cached copy."""
    fresh = await session.get(User, user.id, populate_existing=True)
    if fresh is None or not fresh.is_active:
        raise UserInactive()
    return fresh


async def issue_token_pair(
    session: AsyncSession,
    user: User,
    config: TokenSettings,
    *,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    access = issue_access_token(config.secret, user.id, config.access_minutes)
    refresh = new_refresh_token(config.pepper, config.refresh_days)
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=refresh.token_hash,
            expires_at=refresh.expires_at,
        )
    )
    await session.flush()
    return TokenPair(access.token, refresh.token, access.expires_in)


async def sign_in(session: AsyncSession, user: User, config: TokenSettings) -> TokenPair:
    user.last_login_at = utcnow()
    return await issue_token_pair(session, user, config)


async def rotate_refresh_token(
    session: AsyncSession, project_id: str, token: str, config: TokenSettings
) -> TokenPair:
    """Trade a live refresh token for a new pair; a replayed one revokes its whole family."""
    now = utcnow()
    stored = await repository.refresh_token_by_hash(
        session, hash_refresh_token(config.pepper, token)
    )
    if stored is None:
        raise InvalidRefreshToken()
    if stored.revoked_at is not None:
        await repository.revoke_family(session, stored.family_id, now)
        raise RefreshTokenReused()
    if stored.expires_at <= now:
        await repository.revoke_refresh_token(session, stored.id, now)
        raise RefreshTokenExpired()
    if not await repository.revoke_refresh_token(session, stored.id, now):
        # A concurrent refresh won the race with the same token: treat it as a replay.
        await repository.revoke_family(session, stored.family_id, now)
        raise RefreshTokenReused()
    user = await repository.user_by_id(session, project_id, stored.user_id)
    if user is None or not user.is_active:
        raise InvalidRefreshToken()
    return await issue_token_pair(session, user, config, family_id=stored.family_id)


async def log_out(session: AsyncSession, token: str, pepper: str) -> None:
    """Revoke the token's whole family; says nothing about whether it existed."""
    stored = await repository.refresh_token_by_hash(session, hash_refresh_token(pepper, token))
    if stored is not None:
        await repository.revoke_family(session, stored.family_id, utcnow())


async def deactivate(session: AsyncSession, user: User) -> None:
    user.is_active = False
    await repository.revoke_all_for_user(session, user.id, utcnow())
    await session.flush()


def _erased_id(project_id: str, external_id: str) -> str:
    return f"tollhouse-erased\0{project_id}\0{external_id}"


def _erased_id_digest(pepper: str, project_id: str, external_id: str) -> str:
    """Keyed with the server pepper, like every other hash we keep of something a person
    could guess: a database dump alone cannot confirm that an id was here."""
    return keyed_hash(pepper, _erased_id(project_id, external_id))


def _unkeyed_erased_id_digest(project_id: str, external_id: str) -> str:
    """How tombstones were written before they were keyed (a plain SHA-256). Never written
    any more, still looked up: an id erased back then must not get a second bonus either."""
    return hashlib.sha256(_erased_id(project_id, external_id).encode()).hexdigest()


async def was_erased_before(session: AsyncSession, user: User, pepper: str) -> bool:
    """Whether this user's external id belonged to a user who was erased (a returning
    person: the ledger gives no second welcome bonus). Both tombstone forms count."""
    if user.external_id is None:
        return False
    digests = (
        _erased_id_digest(pepper, user.project_id, user.external_id),
        _unkeyed_erased_id_digest(user.project_id, user.external_id),
    )
    return await repository.is_erased_identity(session, user.project_id, digests)


async def users_of_project(
    session: AsyncSession, project_id: str, *, limit: int, offset: int, q: str | None = None
) -> tuple[int, list[User]]:
    """A page of the project's users (end users, for a platform project), newest first;
    `q` narrows to emails and external ids containing it."""
    return await repository.users_of_project(session, project_id, limit=limit, offset=offset, q=q)


async def erase_personal_data(session: AsyncSession, user: User, pepper: str) -> None:
    """Forget who the user is; rows that record money keep the (now anonymous) id. Only a
    keyed hash of the external id stays behind (`was_erased_before`)."""
    now = utcnow()
    if user.external_id is not None:
        digest = _erased_id_digest(pepper, user.project_id, user.external_id)
        await repository.add_erased_identity(session, user.project_id, digest)
    user.email = None
    user.display_name = None
    user.external_id = None
    user.is_active = False
    user.erased_at = now
    await repository.revoke_all_for_user(session, user.id, now)
    await session.flush()


async def user_for_identity(
    session: AsyncSession,
    project_id: str,
    identity: ExternalIdentity,
    hooks: Sequence[UserCreatedHook] = (),
) -> User:
    """The user behind a verified external token, created on first sight (read-only after)."""
    user = await repository.user_by_external_id(session, project_id, identity.external_id)
    if user is None:
        return await sign_in_external(session, project_id, identity, hooks)
    if not user.is_active:
        raise UserInactive()
    return user


async def end_user_for_claims(
    session: AsyncSession, project_id: str, claims: EndUserClaims
) -> User:
    """A platform project's end user, created on the first request carrying their token."""
    user, _ = await resolve_user(session, project_id, claims.subject, email=claims.email)
    return user
