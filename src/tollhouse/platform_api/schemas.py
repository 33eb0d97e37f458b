"""Request bodies of the Platform API. Strict where the SDK sends exactly these fields;
`POST /api/data` ignores unknown fields because the original ignored its whole body."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tollhouse.identity.models import DISPLAY_NAME_MAX
from tollhouse.identity.schemas import Email

MAX_UNITS = 1000
MAX_CREDITS = 1_000_000_000

Plan = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=DISPLAY_NAME_MAX)]
Description = Annotated[str, StringConstraints(max_length=500)]


class DataRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    units: Annotated[int, Field(strict=True, ge=1, le=MAX_UNITS)] = 1


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: Email
    # Accepted so it can be refused with a clear message (we host no end-user passwords).
    password: Annotated[str, StringConstraints(max_length=1024)] | None = None
    first_name: Name | None = Field(None, alias="firstName")
    last_name: Name | None = Field(None, alias="lastName")
    plan: Plan = "free"


class CustomerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Plan


class CreditMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[int, Field(strict=True, ge=1, le=MAX_CREDITS)]
    description: Description | None = None
