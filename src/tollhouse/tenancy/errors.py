"""Tenancy's refusals, each with a stable code."""

from __future__ import annotations

from tollhouse.kit.errors import Conflict, NotFound


class ProjectNotFound(NotFound):
    code = "project_not_found"
    message = "No such project on this platform."


class ProjectNameTaken(Conflict):
    code = "project_name_taken"
    message = "This platform already has a project with that name in that mode."


class KeyNotFound(NotFound):
    code = "key_not_found"
    message = "No such API key on this platform."
