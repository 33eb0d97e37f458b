"""What `/openapi.json` says beyond FastAPI's defaults: who may call each operation, and the
refusals it can give — all in the one error envelope.

Derived from the routes, not written per route: an operation's security comes from the caller
guard it depends on (identity/caller.py), and every operation documents its 4xx answers and
the 503 of a dependency that is not configured or not reachable, with the envelope schema
(`kit/errors.py`). `/docs` can then authorise with each kind of credential.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from tollhouse.identity import caller
from tollhouse.metering import guards

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "AdminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key"},
    "ServiceKey": {"type": "apiKey", "in": "header", "name": "X-Service-Key"},
    "UserId": {
        "type": "apiKey",
        "in": "header",
        "name": "X-User-ID",
        "description": "With the service key: the user it acts for (id or external id).",
    },
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A secret key (sk_…), a personal token (dev_…), our access token or a "
        "configured issuer's JWT.",
    },
    "PublishableKey": {"type": "apiKey", "in": "header", "name": "X-Publishable-Key"},
    "EndUserToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-End-User-Token",
        "description": "An end user's token beside a project key (also X-Clerk-Token).",
    },
    "ConsoleSession": {"type": "apiKey", "in": "cookie", "name": caller.SESSION_COOKIE},
}

Requirement = dict[str, list[str]]
_SERVICE_USER: Requirement = {"ServiceKey": [], "UserId": []}
_ANY_USER: list[Requirement] = [_SERVICE_USER, {"Bearer": []}]
_PLATFORM: list[Requirement] = [{"PublishableKey": []}, {"Bearer": []}]
_END_USER: list[Requirement] = [
    {"PublishableKey": [], "EndUserToken": []},
    {"Bearer": [], "EndUserToken": []},
]

# Each caller guard → the credentials that satisfy it (alternatives, as OpenAPI lists them).
GUARD_SECURITY: dict[Callable[..., Any], list[Requirement]] = {
    caller.admin_caller: [{"AdminKey": []}],
    caller.service_caller: [{"ServiceKey": []}],
    caller.billing_caller: [{"ServiceKey": []}],
    caller.user_caller: _ANY_USER,
    caller.gateway_caller: [
        *_ANY_USER,
        {"ServiceKey": []},
        {"AdminKey": []},
        {"PublishableKey": []},
    ],
    caller.developer_caller: [{"ConsoleSession": []}, {"Bearer": []}],
    caller.platform_caller: _PLATFORM,
    guards.rate_limited_platform_caller: _PLATFORM,
    caller.secret_key_caller: [{"Bearer": []}],
    caller.end_user_caller: _END_USER,
    guards.rate_limited_end_user: _END_USER,
    # Reads who calls but refuses nobody: anonymous is one of the alternatives.
    caller.resolve_caller: [{}, *_ANY_USER, {"PublishableKey": []}],
}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "title": "ErrorEnvelope",
    "type": "object",
    "required": ["error", "message", "detail", "request_id"],
    "properties": {
        "error": {"type": "string", "description": "A stable, machine-readable code."},
        "message": {"type": "string"},
        "detail": {"description": "Structured detail (field errors, …) or null."},
        "request_id": {"type": "string"},
    },
    # Some refusals add fields an SDK reads at the top level (retryAfter, usageCount, …).
    "additionalProperties": True,
}
_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _refusal(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ENVELOPE_REF}}}


REFUSALS: dict[str, dict[str, Any]] = {
    "4XX": _refusal("Refused: the error envelope with a stable code."),
    "422": _refusal("The request is not valid (field errors in `detail`)."),
    "503": _refusal("A service this operation needs is not configured or not reachable."),
}
AUTH_REFUSALS: dict[str, dict[str, Any]] = {
    "401": _refusal("Missing or invalid credentials."),
    "403": _refusal("These credentials may not do this."),
}


def install(app: FastAPI) -> None:
    """Wrap `app.openapi` so the generated schema carries security and refusals."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.setdefault("components", {})
        if "securitySchemes" not in components:
            _describe(app, schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _describe(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema["components"]
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ENVELOPE_SCHEMA
    # Our 422 is the envelope, not FastAPI's default body.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for path, route in _api_routes(app):
        for method in route.methods or ():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            responses.update(REFUSALS)
            security = _security_of(route.dependant)
            if security is not None:
                operation["security"] = security
                if {} not in security:
                    responses.update(AUTH_REFUSALS)


def _api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Each documented route with its path as the schema names it (prefixes included)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema and context.path_format:
            yield context.path_format, route


def _security_of(dependant: Dependant) -> list[Requirement] | None:
    for call in _calls(dependant):
        if call in GUARD_SECURITY:
            return GUARD_SECURITY[call]
    return None


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)
