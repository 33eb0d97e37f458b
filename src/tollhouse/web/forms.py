"""Posted forms: the CSRF check first, then the fields into a Pydantic model."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from tollhouse.kit.errors import ValidationFailed
from tollhouse.web.security import check_csrf

FormModel = TypeVar("FormModel", bound=BaseModel)
MAX_FIELDS = 30


class InvalidForm(ValidationFailed):
    """A form's fields failed validation; `fields` maps each field to its first problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        first = next(iter(fields.values()), "The form is not valid.")
        super().__init__(first, detail=fields)
        self.fields = fields


async def parse_form(request: Request, model: type[FormModel]) -> FormModel:
    """The form as `model`; CsrfRefused (403) or InvalidForm (422) otherwise."""
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    check_csrf(request, form)
    values = {name: value for name, value in form.items() if isinstance(value, str)}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            fields.setdefault(name, f"{name.replace('_', ' ').capitalize()}: {error['msg']}.")
        raise InvalidForm(fields) from exc
