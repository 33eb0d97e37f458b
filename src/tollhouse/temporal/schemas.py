"""Wire shapes of /api/v1/temporal (flash-contract §1.5)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from tollhouse.temporal.moment import Unit

Direction = Literal["next", "prior"]


class JumpRequest(BaseModel):
    units: int = Field(1, ge=1, le=365)
    # An unknown unit is a 422 (the original silently stepped by days).
    unit: Unit = "day"


class JumpResponse(BaseModel):
    source_id: uuid.UUID
    target_id: uuid.UUID
    source_year: int | None
    target_year: int
    direction: Direction
    units: int
    unit: Unit
    message: str


class SequenceItem(BaseModel):
    id: uuid.UUID
    year: int | None
    slug: str


class SequenceResponse(BaseModel):
    center: SequenceItem
    prior: list[SequenceItem]
    next: list[SequenceItem]
