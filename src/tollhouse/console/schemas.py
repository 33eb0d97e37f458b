"""Developer API bodies. Requests refuse unknown fields and coerce nothing (strict)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tollhouse.catalog.schemas import TierOut
from tollhouse.identity.models import User
from tollhouse.identity.schemas import Email
from tollhouse.kit.clock import utcnow
from tollhouse.kit.passwords import PASSWORD_MAX, PASSWORD_MIN
from tollhouse.tenancy.models import ApiKey, Developer, DeveloperToken, Platform, Project

ProjectName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
TokenName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Issuer = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Plan = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_GRACE_HOURS = 720


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- account --------------------------------------------------------------------------------


class SignupRequest(Body):
    email: Email
    password: Annotated[str, StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]


class LoginRequest(Body):
    email: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=PASSWORD_MAX)]


class DeveloperOut(BaseModel):
    id: str
    email: str
    platform_id: str

    @classmethod
    def of(cls, developer: Developer) -> DeveloperOut:
        return cls(id=developer.id, email=developer.email, platform_id=developer.platform_id)


class PlatformOut(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, platform: Platform) -> PlatformOut:
        return cls(id=platform.id, name=platform.name, created_at=platform.created_at)


class AuthResponse(BaseModel):
    developer: DeveloperOut
    # The session token (also set as the `tollhouse_session` cookie), for non-browser clients.
    token: str


class MeResponse(BaseModel):
    developer: DeveloperOut
    platform: PlatformOut


class TokenCreate(Body):
    name: TokenName
    expires_in_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str | None
    display: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: DeveloperToken) -> TokenOut:
        return cls.model_validate(token, from_attributes=True)


class TokenCreated(BaseModel):
    token: TokenOut
    # Shown once; only its keyed hash is stored.
    plaintext: str


# --- projects and keys ---------------------------------------------------------------------


class ProjectCreate(Body):
    name: ProjectName
    type: Literal["saas", "store", "membership"]
    enable_tax: bool = False
    mode: Literal["test", "live"] = "test"


class ProjectUpdate(Body):
    """Partial; null clears the end-user issuer fields."""

    name: ProjectName | None = None
    enable_tax: bool | None = None
    rate_limit_per_minute: Annotated[int, Field(ge=1, le=100_000)] | None = None
    end_user_issuer: Issuer | None = None
    end_user_jwks_url: Url | None = None
    end_user_audience: Issuer | None = None

    def changes(self) -> dict[str, Any]:
        clearable = {"end_user_issuer", "end_user_jwks_url", "end_user_audience"}
        sent = self.model_dump(include=self.model_fields_set)
        return {k: v for k, v in sent.items() if v is not None or k in clearable}


class ProjectOut(BaseModel):
    id: str
    name: str
    mode: str
    type: str
    enable_tax: bool
    rate_limit_per_minute: int
    end_user_issuer: str | None
    end_user_jwks_url: str | None
    end_user_audience: str | None
    promoted_from_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls.model_validate(project, from_attributes=True)


class ProjectList(BaseModel):
    projects: list[ProjectOut]


KeyStatus = Literal["active", "expiring", "expired", "revoked"]


class KeyOut(BaseModel):
    id: str
    kind: str
    name: str | None
    display: str
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rolled_from_id: str | None

    @classmethod
    def of(cls, key: ApiKey, now: datetime | None = None) -> KeyOut:
        now = now or utcnow()
        status: KeyStatus = "active"
        if key.revoked_at is not None:
            status = "revoked"
        elif key.expires_at is not None:
            status = "expiring" if key.expires_at > now else "expired"
        return cls(
            id=key.id,
            kind=key.kind,
            name=key.name,
            display=key.display,
            status=status,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            last_used_at=key.last_used_at,
            rolled_from_id=key.rolled_from_id,
        )


class KeyList(BaseModel):
    keys: list[KeyOut]


class KeyCreate(Body):
    kind: Literal["publishable", "secret"]
    name: TokenName | None = None


class KeyCreated(BaseModel):
    key: KeyOut
    # Shown once; only its keyed hash is stored.
    plaintext: str


class RollRequest(Body):
    grace_hours: Annotated[int, Field(ge=0, le=MAX_GRACE_HOURS)] = 24


class RollResponse(KeyCreated):
    previous: KeyOut


class ProjectCreated(BaseModel):
    project: ProjectOut
    publishable_key: str
    secret_key: str


class PromoteResponse(ProjectCreated):
    tiers_copied: int


# --- catalog, end users, usage, audit ------------------------------------------------------


class TierList(BaseModel):
    tiers: list[TierOut]


class EndUserOut(BaseModel):
    id: uuid.UUID
    external_id: str | None
    email: str | None
    plan: str | None
    first_name: str | None
    last_name: str | None
    is_active: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> EndUserOut:
        return cls.model_validate(user, from_attributes=True)


class Page(BaseModel):
    limit: int
    offset: int
    total: int


class EndUserPage(Page):
    users: list[EndUserOut]


class EndUserUpdate(Body):
    plan: Plan


class UserUsage(BaseModel):
    user_id: uuid.UUID
    external_id: str | None
    plan: str
    count: int
    period_start: datetime
    period_end: datetime


class Headroom(BaseModel):
    """An end user's quota in their current period: `limit` and `remaining` are null when
    the tier is unlimited; `plan` names the tier they are metered against."""

    plan: str
    used: int
    limit: int | None
    remaining: int | None
    period_start: datetime
    period_end: datetime


class HeadroomResponse(BaseModel):
    """Null `quota` when the user's plan is not one of the project's subscription tiers."""

    quota: Headroom | None


class DayUsage(BaseModel):
    day: date
    units: int


class UsageResponse(BaseModel):
    users: list[UserUsage]
    daily: list[DayUsage]
    since: date


class AuditOut(BaseModel):
    id: int
    action: str
    developer_id: str | None
    target: str | None
    detail: dict[str, Any] | None
    created_at: datetime


class AuditPage(Page):
    entries: list[AuditOut]
