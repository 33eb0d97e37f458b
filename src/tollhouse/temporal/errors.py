"""Errors of /api/v1/temporal (messages as the contract words them)."""

from __future__ import annotations

from tollhouse.kit.errors import BadRequest, NotFound, TollhouseError


class SourceNotFound(NotFound):
    code = "timepoint_not_found"
    message = "Source timepoint not found"


class SourceNotCompleted(BadRequest):
    code = "source_not_completed"
    message = "Source timepoint must be completed before navigation"


class NoSourceYear(BadRequest):
    code = "source_without_year"
    message = "The source timepoint has no year to step from"


class ImpreciseSource(BadRequest):
    code = "imprecise_source"
    message = "The source moment is not precise enough for this unit"


class JumpFailed(TollhouseError):
    """The new moment's generation failed (its hold was released by the run)."""

    status_code = 502
    code = "jump_failed"
    message = "The new moment could not be generated; nothing was charged."
