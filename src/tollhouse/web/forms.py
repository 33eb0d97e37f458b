"""Posted forms: the CSRF check first, then the fields into a Pydantic model."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from tollhouse.kit.errors import ValidationFailed
from tollhouse.web.security import CSRF_FIELD, check_csrf

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
    values = await _checked_fields(request)
    return _validated(model, values)


async def parse_body(
    request: Request, model: type[FormModel], lists: tuple[str, ...] = ()
) -> FormModel:
    """The form as one of the JSON API's own request bodies, so a page is held to the API's
    very rules: the CSRF field and empty fields are left out (the body's defaults apply), text
    converts to numbers and booleans as a form's must, and each field in `lists` (a textarea)
    is a list (checked boxes, or a textarea's non-empty lines)."""
    values = await _checked_fields(request)
    given: dict[str, object] = {
        name: value for name, value in values.items() if value and name != CSRF_FIELD
    }
    form = await request.form()
    for name in lists:
        posted = [value for value in form.getlist(name) if isinstance(value, str)]
        # Checkboxes post a value each; a textarea posts one value, a line per item.
        lines = posted[0].splitlines() if len(posted) == 1 else posted
        if any(line.strip() for line in lines):
            given[name] = [line.strip() for line in lines if line.strip()]
    return _validated(model, given, strict=False)


async def parse_upload(request: Request, field: str = "file") -> UploadFile:
    """A multipart form's one file (CSRF checked first); InvalidForm when it is missing."""
    form = await request.form(max_files=1, max_fields=MAX_FIELDS)
    check_csrf(request, form)
    upload = form.get(field)
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise InvalidForm({field: "Choose a file to upload."})
    return upload


async def _checked_fields(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=MAX_FIELDS)
    check_csrf(request, form)
    return {name: value for name, value in form.items() if isinstance(value, str)}


def _validated(
    model: type[FormModel], values: dict[str, Any], strict: bool | None = None
) -> FormModel:
    try:
        return model.model_validate(values, strict=strict)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            fields.setdefault(name, f"{name.replace('_', ' ').capitalize()}: {error['msg']}.")
        raise InvalidForm(fields) from exc
