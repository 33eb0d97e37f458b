"""The ledger's refusals."""

from __future__ import annotations

from tollhouse.kit.errors import NotFound, TollhouseError


class InsufficientCredits(TollhouseError):
    status_code = 402
    code = "insufficient_credits"

    def __init__(self, balance: int, cost: int) -> None:
        super().__init__(
            f"Insufficient credits. This operation costs {cost} credits.",
            detail={"balance": balance, "cost": cost},
        )


class HoldNotFound(NotFound):
    code = "hold_not_found"
    message = "No such credit hold."
