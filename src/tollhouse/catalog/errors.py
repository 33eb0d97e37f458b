"""The catalog's refusals, each with a stable code."""

from __future__ import annotations

from tollhouse.kit.errors import BadRequest, Conflict, NotFound


class TierNotFound(NotFound):
    code = "tier_not_found"
    message = "No such tier or product in this project."


class TierExists(Conflict):
    code = "tier_exists"
    message = "This project already has a tier or product with that name."


class TypeLocked(BadRequest):
    code = "type_locked"

    def __init__(self, project_type: str, billing_mode: str) -> None:
        allowed = allowed_billing_mode(project_type)
        super().__init__(
            f"A {project_type} project holds only {allowed} items, not {billing_mode}.",
            detail={"project_type": project_type, "allowed_billing_mode": allowed},
        )


class InvalidTierName(BadRequest):
    code = "invalid_tier_name"
    message = "A tier name needs at least one letter or digit."


def allowed_billing_mode(project_type: str) -> str:
    """The type lock: stores sell one-off products, the others sell subscriptions."""
    return "one_off" if project_type == "store" else "subscription"
