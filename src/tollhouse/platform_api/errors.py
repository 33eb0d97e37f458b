"""The Platform API's own refusals (the metering and identity ones are reused as they are)."""

from __future__ import annotations

from tollhouse.kit.errors import Conflict, NotFound, ValidationFailed


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    message = "No such customer in this project."


class CustomerExists(Conflict):
    code = "customer_exists"
    message = "This project already has a customer with that email."


class PlanNotOffered(ValidationFailed):
    code = "unknown_plan"

    def __init__(self, plan: str) -> None:
        super().__init__(
            f"Unknown plan {plan!r}: the plan must be one of this project's subscription tiers."
        )


class PasswordsNotSupported(ValidationFailed):
    code = "passwords_not_supported"
    message = (
        "Tollhouse does not store end-user passwords: create the customer without `password` "
        "and sign them in with your own identity provider, or hand them a token from "
        "POST /api/customers/{id}/token."
    )


class NoPublishableKey(Conflict):
    code = "no_publishable_key"
    message = "This project has no active publishable key to bind the token to; issue one."
