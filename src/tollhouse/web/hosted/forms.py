"""The hosted pages' forms."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tollhouse.identity.models import DISPLAY_NAME_MAX, EMAIL_MAX
from tollhouse.kit.passwords import PASSWORD_MAX

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class _Form(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore")


class SignUpForm(_Form):
    email: str = Field(max_length=EMAIL_MAX, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    first_name: str | None = Field(None, max_length=DISPLAY_NAME_MAX)
    last_name: str | None = Field(None, max_length=DISPLAY_NAME_MAX)


class SignInForm(_Form):
    email: str = Field(max_length=EMAIL_MAX, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class EmailForm(_Form):
    email: str = Field(max_length=EMAIL_MAX, pattern=EMAIL_PATTERN)


class TicketForm(_Form):
    token: str = Field(min_length=1, max_length=128)


class ResetForm(TicketForm):
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class DetailsForm(_Form):
    first_name: str | None = Field(None, max_length=DISPLAY_NAME_MAX)
    last_name: str | None = Field(None, max_length=DISPLAY_NAME_MAX)


class EmptyForm(_Form):
    """A button: only the CSRF token."""
