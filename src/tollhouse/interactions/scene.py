"""A completed timepoint as its characters know it: who is there, when, where, what happens.

Lookup rules (flash-contract §5): names match case-insensitively and exactly; a miss names
who is available; `characters` is "all" or a list of names.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tollhouse.generation.models import Timepoint
from tollhouse.interactions.errors import CharacterNotFound, NoCharacterData, NoMatchingCharacters
from tollhouse.interactions.schemas import Characters


class Persona(BaseModel):
    """One character's bio as the scene stored it (older scenes may lack fields)."""

    name: str
    role: str | None = None
    system_prompt: str = ""
    dialog_context: str = ""
    personality: str = ""
    speaking_style: str = ""
    emotional_state: str = ""
    historical_note: str = ""


@dataclass(frozen=True, slots=True)
class Scene:
    timepoint_id: uuid.UUID
    query: str
    year: int | None
    month: int | None
    day: int | None
    time_of_day: str | None
    era: str | None
    location: str | None
    setting: dict[str, Any]
    moment: dict[str, Any]
    dialog: list[dict[str, Any]]
    cast: list[Persona]
    preset: str
    permissive: bool

    def person(self, name: str) -> Persona:
        wanted = name.strip().casefold()
        for persona in self.cast:
            if persona.name.casefold() == wanted:
                return persona
        raise CharacterNotFound(f"Character '{name}' not found. Available: {self.names}")

    def people(self, chosen: Characters) -> list[Persona]:
        if chosen == "all":
            return list(self.cast)
        wanted = {name.strip().casefold() for name in chosen}
        found = [persona for persona in self.cast if persona.name.casefold() in wanted]
        if not found:
            raise NoMatchingCharacters(
                f"No matching characters found for {list(chosen)}. Available: {self.names}"
            )
        return found

    @property
    def names(self) -> list[str]:
        return [persona.name for persona in self.cast]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def scene_of(timepoint: Timepoint) -> Scene:
    """404 `no_character_data` when the timepoint has no characters (not completed, failed)."""
    payload = timepoint.tdf_payload or {}
    people = _dict(payload.get("character_data")).get("characters")
    if not isinstance(people, list) or not people:
        raise NoCharacterData()
    cast = [Persona.model_validate(person) for person in people if isinstance(person, dict)]
    dialog = payload.get("dialog")
    return Scene(
        timepoint_id=timepoint.id,
        query=timepoint.query,
        year=timepoint.year,
        month=timepoint.month,
        day=timepoint.day,
        time_of_day=timepoint.time_of_day,
        era=timepoint.era,
        location=timepoint.location,
        setting=_dict(payload.get("scene_data")),
        moment=_dict(payload.get("moment_data")),
        dialog=[line for line in dialog if isinstance(line, dict)]
        if isinstance(dialog, list)
        else [],
        cast=cast,
        preset=timepoint.preset,
        permissive=payload.get("model_permissiveness") == "permissive",
    )
