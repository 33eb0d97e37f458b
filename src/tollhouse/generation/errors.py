"""Errors of /api/v1/timepoints (messages as the contract words them)."""

from __future__ import annotations

from tollhouse.kit.errors import BadRequest, Forbidden, NotFound, TollhouseError


class TimepointNotFound(NotFound):
    code = "timepoint_not_found"
    message = "Timepoint not found"


class TimepointPrivate(Forbidden):
    code = "timepoint_private"
    message = "This timepoint is private"


class NotOwner(Forbidden):
    code = "not_owner"
    message = "Only the owner can do this"


class InvalidVisibility(BadRequest):
    code = "invalid_visibility"
    message = "Invalid visibility value. Must be 'public' or 'private'."


class NotExportable(BadRequest):
    code = "not_completed"
    message = "Timepoint must be completed before export"


class NoCharacters(NotFound):
    code = "no_characters"
    message = "This timepoint has no character data"


class NoImage(NotFound):
    code = "no_image"
    message = "This timepoint has no image"


class GenerationTimedOut(TollhouseError):
    status_code = 504
    code = "generation_timeout"
    message = "The generation did not finish in time; nothing was charged."


class GenerationFailed(TollhouseError):
    status_code = 500
    code = "generation_error"
    message = "The generation failed; nothing was charged."


class ModelNotFound(NotFound):
    code = "model_not_found"
    message = "Model not found"


class TaskNotFound(NotFound):
    code = "task_not_found"
    message = "Task not found"


class OperatorOnly(Forbidden):
    code = "operator_only"
    message = "Model comparison is for operators (the service or admin key) on this server."


class EvalFailed(TollhouseError):
    status_code = 502
    code = "eval_failed"
    message = "No model answered; nothing was charged."
