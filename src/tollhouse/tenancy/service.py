"""Tenancy rules: the home project, platforms, projects, API keys and the audit log.

Keys are stored as HMAC-SHA256 under the server pepper; the plaintext exists only in the
return value of `issue_key` / `roll_key`, shown to the developer once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.config import Settings
from tollhouse.db.dialect import insert_ignoring_conflicts
from tollhouse.kit.clock import utcnow
from tollhouse.kit.crypto import keyed_hash
from tollhouse.kit.errors import Forbidden
from tollhouse.tenancy import keys
from tollhouse.tenancy.errors import KeyNotFound, ProjectNameTaken, ProjectNotFound
from tollhouse.tenancy.models import ApiKey, AuditEntry, Platform, Project

HOME_PLATFORM_ID = "plt_home"
MAX_ROLL_GRACE = timedelta(days=30)


async def ensure_home_project(
    session: AsyncSession, platform_name: str, project_name: str
) -> Project:
    """Create the home platform and its live project on first start; safe to race."""
    await session.execute(
        insert_ignoring_conflicts(session, Platform).values(
            id=HOME_PLATFORM_ID, name=platform_name, is_home=True
        )
    )
    await session.execute(
        insert_ignoring_conflicts(session, Project).values(
            platform_id=HOME_PLATFORM_ID,
            name=project_name,
            mode="live",
        )
    )
    project = await session.scalar(
        select(Project).where(
            Project.platform_id == HOME_PLATFORM_ID,
            Project.name == project_name,
            Project.mode == "live",
        )
    )
    assert project is not None
    return project


async def create_platform(session: AsyncSession, name: str) -> Platform:
    platform = Platform(name=name)
    session.add(platform)
    await session.flush()
    return platform


async def create_project(
    session: AsyncSession,
    platform_id: str,
    *,
    name: str,
    mode: keys.Mode,
    type: str = "saas",
    enable_tax: bool = False,
    **settings: Any,
) -> Project:
    """A new project (one name in one mode); 409 when the name is taken in that mode."""
    project = Project(
        platform_id=platform_id, name=name, mode=mode, type=type, enable_tax=enable_tax, **settings
    )
    try:
        async with session.begin_nested():
            session.add(project)
            await session.flush()
    except IntegrityError as exc:
        raise ProjectNameTaken() from exc
    return project


async def project_of_platform(session: AsyncSession, platform_id: str, project_id: str) -> Project:
    """A project, only if it belongs to the platform (another tenant's id is a 404)."""
    project = await session.scalar(
        select(Project).where(Project.id == project_id, Project.platform_id == platform_id)
    )
    if project is None:
        raise ProjectNotFound()
    return project


async def projects_of_platform(session: AsyncSession, platform_id: str) -> list[Project]:
    rows = await session.scalars(
        select(Project)
        .where(Project.platform_id == platform_id)
        .order_by(Project.name, Project.mode)
    )
    return list(rows)


async def all_projects(session: AsyncSession) -> list[Project]:
    """Every platform's projects, for the operator's CLI; routes use `projects_of_platform`."""
    rows = await session.scalars(
        select(Project).order_by(Project.platform_id, Project.name, Project.mode)
    )
    return list(rows)


# --- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: `plaintext` is shown once and never stored."""

    key: ApiKey
    plaintext: str


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """What a presented key resolves to; small and immutable so processes can cache it."""

    key_id: str
    kind: keys.KeyKind
    project_id: str
    platform_id: str
    mode: keys.Mode
    expires_at: datetime | None
    rate_limit_per_minute: int
    # The project's own identity provider for end-user tokens, if it has one.
    end_user_issuer: str | None
    end_user_jwks_url: str | None
    end_user_audience: str | None
    # When the platform's keys stop working (plan lapsed); None = never (or the gate is off).
    platform_blocked_after: datetime | None = None


# --- the platform-subscription gate ---------------------------------------------------------

PLAN_ALLOWED_STATUSES = ("trialing", "active", "past_due")


class SubscriptionExpired(Forbidden):
    code = "subscription_expired"
    message = "This platform's subscription has expired; renew it in the console."


@dataclass(frozen=True, slots=True)
class PlanGate:
    """When a platform's keys stop working; only exists while PLATFORM_PRICE_ID is set.

    trialing/active/past_due: never (past_due is Stripe still retrying). canceled: at
    `current_period_end` + grace. none (never subscribed): the trial window from the
    platform's creation, + grace (the original allowed it forever). The home platform: never.
    """

    trial: timedelta
    grace: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanGate | None:
        if not settings.platform_price_id:
            return None
        return cls(
            trial=timedelta(days=settings.platform_trial_days),
            grace=timedelta(days=settings.platform_grace_days),
        )

    def blocked_after(
        self,
        *,
        is_home: bool,
        status: str,
        current_period_end: datetime | None,
        created_at: datetime,
    ) -> datetime | None:
        if is_home or status in PLAN_ALLOWED_STATUSES:
            return None
        if status == "canceled" and current_period_end is not None:
            return current_period_end + self.grace
        return created_at + self.trial + self.grace


def key_hash(pepper: str, plaintext: str) -> str:
    return keyed_hash(pepper, plaintext)


async def issue_key(
    session: AsyncSession,
    pepper: str,
    project: Project,
    kind: keys.KeyKind,
    *,
    name: str | None = None,
    rolled_from_id: str | None = None,
) -> IssuedKey:
    mode: keys.Mode = "live" if project.mode == "live" else "test"
    plaintext = keys.new_key(kind, mode)
    key = ApiKey(
        project_id=project.id,
        kind=kind,
        key_hash=key_hash(pepper, plaintext),
        display=keys.display(plaintext, kind),
        name=name,
        rolled_from_id=rolled_from_id,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key, plaintext)


async def key_of_platform(session: AsyncSession, platform_id: str, key_id: str) -> ApiKey:
    key = await session.scalar(
        select(ApiKey)
        .join(Project, Project.id == ApiKey.project_id)
        .where(ApiKey.id == key_id, Project.platform_id == platform_id)
    )
    if key is None:
        raise KeyNotFound()
    return key


async def keys_of_project(session: AsyncSession, project_id: str) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.project_id == project_id).order_by(ApiKey.created_at)
    )
    return list(rows)


async def roll_key(
    session: AsyncSession, pepper: str, key: ApiKey, grace: timedelta, now: datetime | None = None
) -> IssuedKey:
    """A new key of the same kind; the old one keeps working for `grace` (0 = not at all).

    The old key's expiry only ever moves earlier, so rolling twice cannot extend a grace.
    """
    now = now or utcnow()
    grace = min(max(grace, timedelta(0)), MAX_ROLL_GRACE)
    ends = now + grace
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key.id, (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > ends))
        .values(expires_at=ends)
    )
    project = await session.get_one(Project, key.project_id)
    kind: keys.KeyKind = "secret" if key.kind == "secret" else "publishable"
    return await issue_key(session, pepper, project, kind, name=key.name, rolled_from_id=key.id)


async def revoke_key(session: AsyncSession, key: ApiKey, now: datetime | None = None) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


async def find_active_key(
    session: AsyncSession,
    pepper: str,
    plaintext: str,
    now: datetime | None = None,
    *,
    gate: PlanGate | None = None,
) -> KeyMatch | None:
    """The active key behind a presented string, or None (unknown, expired or revoked).

    With a `gate`, the match also says when its platform's lapsed plan blocks it.
    """
    parsed = keys.parse(plaintext)
    if parsed is None:
        return None
    now = now or utcnow()
    row = (
        await session.execute(
            select(
                ApiKey.id,
                ApiKey.kind,
                ApiKey.project_id,
                Project.platform_id,
                Project.mode,
                ApiKey.expires_at,
                Project.rate_limit_per_minute,
                Project.end_user_issuer,
                Project.end_user_jwks_url,
                Project.end_user_audience,
                Platform.is_home,
                Platform.plan_status,
                Platform.current_period_end,
                Platform.created_at,
            )
            .join(Project, Project.id == ApiKey.project_id)
            .join(Platform, Platform.id == Project.platform_id)
            .where(
                ApiKey.key_hash == key_hash(pepper, plaintext),
                ApiKey.revoked_at.is_(None),
                (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    values: tuple[Any, ...] = tuple(row)
    match = KeyMatch(*values[:10])
    if gate is None:
        return match
    is_home, status, period_end, created_at = values[10:]
    blocked_after = gate.blocked_after(
        is_home=is_home, status=status, current_period_end=period_end, created_at=created_at
    )
    return replace(match, platform_blocked_after=blocked_after)


# --- audit --------------------------------------------------------------------------------


async def record(
    session: AsyncSession,
    platform_id: str,
    action: str,
    *,
    developer_id: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """One line of the audit log; never holds a secret (pass displays, not keys)."""
    session.add(
        AuditEntry(
            platform_id=platform_id,
            developer_id=developer_id,
            action=action,
            target=target,
            detail=detail,
        )
    )
    await session.flush()


async def audit_entries(
    session: AsyncSession, platform_id: str | None, *, limit: int, offset: int
) -> tuple[int, list[AuditEntry]]:
    """A page of one platform's audit log (every platform's for the operator), newest first,
    and how many entries there are in all."""
    scope = [AuditEntry.platform_id == platform_id] if platform_id is not None else []
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*scope))
    rows = await session.scalars(
        select(AuditEntry).where(*scope).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    )
    return total or 0, list(rows)


# --- projects with their first keys (console, CLI, promote) --------------------------------


@dataclass(frozen=True, slots=True)
class NewProject:
    """A project just made with its first key pair; the plaintexts are shown once."""

    project: Project
    publishable: IssuedKey
    secret: IssuedKey


async def create_project_with_keys(
    session: AsyncSession,
    pepper: str,
    platform_id: str,
    *,
    name: str,
    mode: keys.Mode,
    **settings: Any,
) -> NewProject:
    project = await create_project(session, platform_id, name=name, mode=mode, **settings)
    publishable = await issue_key(session, pepper, project, "publishable")
    secret = await issue_key(session, pepper, project, "secret")
    return NewProject(project, publishable, secret)


async def key_by_id(session: AsyncSession, key_id: str) -> ApiKey:
    """Any platform's key, for the operator's CLI; routes use `key_of_platform`."""
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise KeyNotFound()
    return key
