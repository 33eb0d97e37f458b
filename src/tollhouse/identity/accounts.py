"""Password accounts of platform projects' end users (the hosted pages' sign-up and sign-in).

An account is a `User` of the project plus an `EndUserCredential` (argon2id hash, verified
address). Sign-in needs a verified address; verification and password reset go through
single-use tickets mailed as links (stored as keyed hashes, used by one conditional update).
A customer the developer created (`POST /api/customers`) can claim an account by signing up
with their address: only the verification link, which proves the address, makes it usable.
Functions flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.identity import service
from tollhouse.identity.models import EndUserCredential, EndUserTicket, User
from tollhouse.identity.service import UserCreatedHook
from tollhouse.kit import passwords
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import keyed_hash, random_token
from tollhouse.kit.errors import BadRequest, Conflict, Forbidden, Unauthorized
from tollhouse.kit.ids import new_id

CUSTOMER_ID_PREFIX = "cus"
TICKET_LIFETIME: dict[str, timedelta] = {
    "verify": timedelta(days=2),
    "reset": timedelta(hours=1),
}
Purpose = Literal["verify", "reset"]


class AccountExists(Conflict):
    code = "account_exists"
    message = "An account with this email already exists: sign in instead."


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    message = "Email or password is wrong."


class EmailNotVerified(Forbidden):
    code = "email_not_verified"
    message = "Confirm your email first: follow the link we sent you."


class InvalidTicket(BadRequest):
    code = "invalid_link"
    message = "This link is invalid, used or expired."


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def sign_up(
    session: AsyncSession,
    project_id: str,
    email: str,
    password: str,
    hooks: Sequence[UserCreatedHook] = (),
) -> User:
    """A new, unverified account (and its user, unless the project has one with this address)."""
    if not passwords.acceptable(password):
        raise passwords.WeakPassword()
    email = normalise_email(email)
    password_hash = await passwords.hash_password(password)
    user = await session.scalar(
        select(User)
        .where(
            User.project_id == project_id,
            func.lower(User.email) == email,
            User.is_active.is_(True),
        )
        .limit(1)
    )
    try:
        async with session.begin_nested():
            if user is None:
                user, _ = await service.resolve_user(
                    session, project_id, new_id(CUSTOMER_ID_PREFIX), email=email, hooks=hooks
                )
            session.add(
                EndUserCredential(
                    user_id=user.id, project_id=project_id, email=email, password_hash=password_hash
                )
            )
            await session.flush()
    except IntegrityError as exc:
        raise AccountExists() from exc
    return user


async def sign_in(session: AsyncSession, project_id: str, email: str, password: str) -> User:
    """The account's user; an unknown address and a wrong password look (and take) alike."""
    if len(password) > passwords.PASSWORD_MAX:
        raise InvalidCredentials()
    credential = await session.scalar(
        select(EndUserCredential).where(
            EndUserCredential.project_id == project_id,
            EndUserCredential.email == normalise_email(email),
        )
    )
    stored = credential.password_hash if credential is not None else passwords.dummy_hash()
    if not await passwords.password_matches(stored, password) or credential is None:
        raise InvalidCredentials()
    if credential.email_verified_at is None:
        raise EmailNotVerified()
    user = await service.active_user_by_id(session, project_id, credential.user_id)
    if passwords.needs_rehash(credential.password_hash):
        credential.password_hash = await passwords.hash_password(password)
    user.last_login_at = utcnow()
    await session.flush()
    return user


async def account_user(session: AsyncSession, project_id: str, email: str) -> User | None:
    """The active user holding an account with this address, if any."""
    return await session.scalar(
        select(User)
        .join(EndUserCredential, EndUserCredential.user_id == User.id)
        .where(
            EndUserCredential.project_id == project_id,
            EndUserCredential.email == normalise_email(email),
            User.is_active.is_(True),
        )
    )


async def issue_ticket(session: AsyncSession, pepper: str, user: User, purpose: Purpose) -> str:
    """A single-use link token for `user`; the plaintext goes into the mail only."""
    plaintext = random_token(32)
    session.add(
        EndUserTicket(
            user_id=user.id,
            purpose=purpose,
            token_hash=keyed_hash(pepper, plaintext),
            expires_at=utcnow() + TICKET_LIFETIME[purpose],
        )
    )
    await session.flush()
    return plaintext


async def _use_ticket(
    session: AsyncSession, pepper: str, project_id: str, token: str, purpose: Purpose
) -> tuple[User, EndUserCredential]:
    now = utcnow()
    result = await session.execute(
        update(EndUserTicket)
        .where(
            EndUserTicket.token_hash == keyed_hash(pepper, token[:128]),
            EndUserTicket.purpose == purpose,
            EndUserTicket.used_at.is_(None),
            EndUserTicket.expires_at > now,
        )
        .values(used_at=now)
        .returning(EndUserTicket.user_id)
        .execution_options(synchronize_session=False)
    )
    used = result.scalar_one_or_none()
    if used is None:
        raise InvalidTicket()
    credential = await session.get(EndUserCredential, used)
    if credential is None or credential.project_id != project_id:
        raise InvalidTicket()
    user = await service.active_user_by_id(session, project_id, used)
    return user, credential


async def verify_email(session: AsyncSession, pepper: str, project_id: str, token: str) -> User:
    user, credential = await _use_ticket(session, pepper, project_id, token, "verify")
    credential.email_verified_at = credential.email_verified_at or utcnow()
    await session.flush()
    return user


async def reset_password(
    session: AsyncSession, pepper: str, project_id: str, token: str, password: str
) -> User:
    """A new password; following the link also proves the address."""
    if not passwords.acceptable(password):
        raise passwords.WeakPassword()
    user, credential = await _use_ticket(session, pepper, project_id, token, "reset")
    credential.password_hash = await passwords.hash_password(password)
    credential.password_changed_at = utcnow()
    credential.email_verified_at = credential.email_verified_at or utcnow()
    await session.flush()
    return user


async def update_details(
    session: AsyncSession, user: User, first_name: str | None, last_name: str | None
) -> User:
    user = await service.reload(session, user)
    user.first_name = first_name or None
    user.last_name = last_name or None
    await session.flush()
    return user


async def user_of_session(
    session: AsyncSession, project_id: str, user_id: uuid.UUID, since: datetime
) -> User | None:
    """The active user a hosted-page session names, unless the password changed after the
    session began (a reset signs every browser out)."""
    credential = await session.get(EndUserCredential, user_id)
    if credential is None or credential.project_id != project_id:
        return None
    if credential.password_changed_at > since:
        return None
    user = await session.get(User, user_id, populate_existing=True)
    if user is None or not user.is_active or user.project_id != project_id:
        return None
    return user
