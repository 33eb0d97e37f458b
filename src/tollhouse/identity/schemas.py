"""Request and response bodies of the identity routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tollhouse.identity.models import DISPLAY_NAME_MAX, EMAIL_MAX, EXTERNAL_ID_MAX


def _looks_like_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError("not an email address")
    return value


Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=EMAIL_MAX),
    AfterValidator(_looks_like_email),
]
Token = Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class Body(BaseModel):
    # Unknown fields are ignored, not refused: existing clients send extras.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class ResolveUserRequest(Body):
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_MAX)]
    email: Email | None = None
    display_name: Annotated[str, StringConstraints(max_length=DISPLAY_NAME_MAX)] | None = None


class ResolveUserResponse(BaseModel):
    user_id: uuid.UUID
    created: bool


class AppleSignInRequest(Body):
    identity_token: Token


class GoogleSignInRequest(Body):
    id_token: Token


class ServiceTokenRequest(Body):
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_MAX)] = Field(
        description="Our user id, or the user's external id."
    )


class RefreshRequest(Body):
    refresh_token: Token


class TokenPairResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int


class MeResponse(BaseModel):
    id: uuid.UUID
    external_id: str | None
    email: str | None
    display_name: str | None
    created_at: datetime
    last_login_at: datetime | None


class DetailResponse(BaseModel):
    detail: str


class ErasedResponse(BaseModel):
    """Like every other delete's answer (`DELETE /timepoints/{id}`): what, and that it is."""

    id: uuid.UUID
    deleted: bool
    message: str
