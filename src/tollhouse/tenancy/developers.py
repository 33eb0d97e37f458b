"""Developer accounts: sign-up, log-in, console sessions and personal access tokens.

Passwords are argon2id hashes; session and personal tokens are stored only as keyed hashes
under the server pepper, so a database leak yields nothing that signs anyone in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import keyed_hash, random_token, secrets_equal
from tollhouse.kit.errors import BadRequest, Conflict, NotFound, Unauthorized
from tollhouse.kit.passwords import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    WeakPassword,
    dummy_hash,
    hash_password,
    needs_rehash,
    password_matches,
)
from tollhouse.tenancy.models import Developer, DeveloperToken, Platform
from tollhouse.tenancy.service import create_platform

TokenKind = Literal["session", "personal"]

SESSION_LIFETIME = timedelta(days=7)
PERSONAL_TOKEN_PREFIX = "dev_"  # noqa: S105 - a prefix, not a secret
# The longest credential worth hashing; anything longer is refused unseen.
CREDENTIAL_MAX = 256
LAST_USED_GRANULARITY = timedelta(minutes=1)
RESET_LIFETIME = timedelta(hours=1)


class EmailTaken(Conflict):
    code = "email_taken"
    message = "A developer account with this email already exists."


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    message = "Email or password is wrong."


class InvalidResetLink(BadRequest):
    code = "invalid_reset_link"
    message = "This password reset link is invalid, used or expired."


class TokenNotFound(NotFound):
    code = "token_not_found"
    message = "No such personal access token."


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: `plaintext` is shown once and never stored."""

    token: DeveloperToken
    plaintext: str


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def sign_up(session: AsyncSession, email: str, password: str) -> Developer:
    """A new developer and their platform, in the request's transaction; 409 on a taken email."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise WeakPassword()
    email = normalise_email(email)
    password_hash = await hash_password(password)
    try:
        # One savepoint for both rows: a taken email leaves no orphan platform behind.
        async with session.begin_nested():
            platform = await create_platform(session, name=email)
            developer = Developer(email=email, password_hash=password_hash, platform_id=platform.id)
            session.add(developer)
            await session.flush()
    except IntegrityError as exc:
        raise EmailTaken() from exc
    return developer


async def log_in(session: AsyncSession, email: str, password: str) -> Developer:
    """The developer with these credentials; unknown email and wrong password look alike."""
    if len(password) > PASSWORD_MAX:
        raise InvalidCredentials()
    developer = await session.scalar(
        select(Developer).where(Developer.email == normalise_email(email))
    )
    # An unknown email still pays for one verification, so timing does not reveal accounts.
    stored = developer.password_hash if developer is not None else dummy_hash()
    if not await password_matches(stored, password) or developer is None:
        raise InvalidCredentials()
    if needs_rehash(developer.password_hash):
        developer.password_hash = await hash_password(password)
    developer.last_login_at = utcnow()
    await session.flush()
    return developer


async def developer_by_id(session: AsyncSession, developer_id: str) -> Developer:
    developer = await session.get(Developer, developer_id)
    if developer is None:
        raise NotFound("No such developer.")
    return developer


async def platform_of(session: AsyncSession, developer: Developer) -> Platform:
    return await session.get_one(Platform, developer.platform_id)


# --- tokens --------------------------------------------------------------------------------


async def _issue(
    session: AsyncSession,
    pepper: str,
    developer_id: str,
    kind: TokenKind,
    plaintext: str,
    *,
    display: str,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    token = DeveloperToken(
        developer_id=developer_id,
        kind=kind,
        token_hash=keyed_hash(pepper, plaintext),
        name=name,
        display=display,
        expires_at=expires_at,
    )
    session.add(token)
    await session.flush()
    return IssuedToken(token, plaintext)


async def start_session(session: AsyncSession, pepper: str, developer: Developer) -> IssuedToken:
    """A console session (the `tollhouse_session` cookie's value), valid for seven days."""
    return await _issue(
        session,
        pepper,
        developer.id,
        "session",
        random_token(32),
        display="session",
        expires_at=utcnow() + SESSION_LIFETIME,
    )


async def end_session(session: AsyncSession, pepper: str, credential: str) -> None:
    """Revoke the session behind a cookie value (a no-op for an unknown one)."""
    await session.execute(
        update(DeveloperToken)
        .where(
            DeveloperToken.token_hash == keyed_hash(pepper, credential),
            DeveloperToken.kind == "session",
            DeveloperToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def personal_token_display(plaintext: str) -> str:
    cut = len(PERSONAL_TOKEN_PREFIX) + 4
    return f"{plaintext[:cut]}…{plaintext[-4:]}"


async def create_personal_token(
    session: AsyncSession,
    pepper: str,
    developer_id: str,
    name: str,
    expires_in_days: int | None = None,
) -> IssuedToken:
    plaintext = PERSONAL_TOKEN_PREFIX + random_token(32)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    return await _issue(
        session,
        pepper,
        developer_id,
        "personal",
        plaintext,
        display=personal_token_display(plaintext),
        name=name,
        expires_at=expires_at,
    )


async def personal_tokens(session: AsyncSession, developer_id: str) -> list[DeveloperToken]:
    rows = await session.scalars(
        select(DeveloperToken)
        .where(DeveloperToken.developer_id == developer_id, DeveloperToken.kind == "personal")
        .order_by(DeveloperToken.created_at, DeveloperToken.id)
    )
    return list(rows)


async def revoke_personal_token(
    session: AsyncSession, developer_id: str, token_id: uuid.UUID
) -> DeveloperToken:
    """Revoke one of the developer's own tokens; another developer's id is a 404."""
    token = await session.scalar(
        select(DeveloperToken).where(
            DeveloperToken.id == token_id,
            DeveloperToken.developer_id == developer_id,
            DeveloperToken.kind == "personal",
        )
    )
    if token is None:
        raise TokenNotFound()
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
    return token


async def developer_for_credential(
    session: AsyncSession, pepper: str, credential: str, kind: TokenKind
) -> Developer | None:
    """The developer behind an active (unexpired, unrevoked) token of `kind`, else None."""
    if not credential or len(credential) > CREDENTIAL_MAX:
        return None
    if kind == "personal" and not credential.startswith(PERSONAL_TOKEN_PREFIX):
        return None
    now = utcnow()
    row = (
        await session.execute(
            select(DeveloperToken.id, DeveloperToken.last_used_at, Developer)
            .join(Developer, Developer.id == DeveloperToken.developer_id)
            .where(
                DeveloperToken.token_hash == keyed_hash(pepper, credential),
                DeveloperToken.kind == kind,
                DeveloperToken.revoked_at.is_(None),
                DeveloperToken.expires_at.is_(None) | (DeveloperToken.expires_at > now),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    token_id, last_used_at, developer = row
    # At most one write a minute per token: resolving a credential should not be a write.
    if last_used_at is None or last_used_at < now - LAST_USED_GRANULARITY:
        await session.execute(
            update(DeveloperToken).where(DeveloperToken.id == token_id).values(last_used_at=now)
        )
    developer_row: Developer = developer
    return developer_row


# --- password reset ------------------------------------------------------------------------


def _reset_signature(pepper: str, developer: Developer, expires: int) -> str:
    # Bound to the current password hash: once the password changes the link is dead, so it
    # is single-use without a table of tickets.
    return keyed_hash(pepper, f"reset:{developer.id}:{expires}:{developer.password_hash}")


async def reset_link_token(session: AsyncSession, pepper: str, email: str) -> str | None:
    """A password reset token for the account at `email` (None when there is none; the caller
    answers alike either way, so the form does not reveal accounts)."""
    developer = await session.scalar(
        select(Developer).where(Developer.email == normalise_email(email))
    )
    if developer is None:
        return None
    expires = int((utcnow() + RESET_LIFETIME).timestamp())
    return f"{developer.id}.{expires}.{_reset_signature(pepper, developer, expires)}"


async def reset_password(
    session: AsyncSession, pepper: str, token: str, password: str
) -> Developer:
    """A new password for the developer the token names; every console session ends."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise WeakPassword()
    developer_id, _, rest = token[:CREDENTIAL_MAX].partition(".")
    expires_text, _, signature = rest.partition(".")
    if not expires_text.isdigit() or int(expires_text) < utcnow().timestamp():
        raise InvalidResetLink()
    developer = await session.get(Developer, developer_id)
    if developer is None or not secrets_equal(
        signature, _reset_signature(pepper, developer, int(expires_text))
    ):
        raise InvalidResetLink()
    developer.password_hash = await hash_password(password)
    await session.execute(
        update(DeveloperToken)
        .where(
            DeveloperToken.developer_id == developer.id,
            DeveloperToken.kind == "session",
            DeveloperToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    await session.flush()
    return developer


# --- operator accounts ---------------------------------------------------------------------


async def developer_by_email(session: AsyncSession, email: str) -> Developer | None:
    return await session.scalar(select(Developer).where(Developer.email == normalise_email(email)))


async def set_operator(session: AsyncSession, developer: Developer, operator: bool) -> None:
    """Let the account open the operator pages (or stop it): only the CLI calls this, so
    becoming an operator takes a shell on the server, never a web request."""
    developer.is_operator = operator
    await session.flush()


async def operators(session: AsyncSession) -> list[Developer]:
    rows = await session.scalars(
        select(Developer).where(Developer.is_operator.is_(True)).order_by(Developer.email)
    )
    return list(rows)
