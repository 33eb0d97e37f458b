"""The current request's id, readable anywhere in the request's task (logs, error bodies)."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# A caller-supplied id is echoed only when it is short and plain (it ends up in logs).
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str | None:
    return _request_id.get()


def adopt_request_id(supplied: str | None) -> str:
    request_id = supplied if supplied and _ACCEPTABLE_ID.match(supplied) else uuid.uuid4().hex
    _request_id.set(request_id)
    return request_id
