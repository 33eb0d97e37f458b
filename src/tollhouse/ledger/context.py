"""What the ledger's routes need from the app, built once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from fastapi import Request


@dataclass(frozen=True, slots=True)
class LedgerContext:
    costs: Mapping[str, int]
    hold_ttl: timedelta
    signup_credits: int


def ledger_context(request: Request) -> LedgerContext:
    return cast(LedgerContext, request.app.state.ledger)
