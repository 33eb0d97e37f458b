"""Errors of /api/v1/interactions (messages as the contract words them)."""

from __future__ import annotations

from tollhouse.kit.errors import NotFound, TollhouseError


class NoCharacterData(NotFound):
    code = "no_character_data"
    message = "Timepoint has no character data. Generation may be incomplete."


class CharacterNotFound(NotFound):
    code = "character_not_found"
    message = "Character not found"


class NoMatchingCharacters(NotFound):
    code = "no_matching_characters"
    message = "No matching characters found"


class SessionNotFound(NotFound):
    code = "session_not_found"
    message = "Session not found"


class InteractionTimedOut(TollhouseError):
    status_code = 408
    code = "interaction_timeout"
    message = "The character did not answer in time; nothing was charged."


class InteractionFailed(TollhouseError):
    """The LLM could not answer (every provider failed): upstream trouble, not ours."""

    status_code = 502
    code = "interaction_failed"
    message = "The character could not answer; nothing was charged."
