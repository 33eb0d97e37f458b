"""The moment as staged so far: what every agent after the scene builds on."""

from __future__ import annotations

from dataclasses import dataclass

from tollhouse.generation.agents.grounding import Grounding
from tollhouse.generation.agents.scene import SceneSetting
from tollhouse.generation.agents.timeline import Timeline


@dataclass(frozen=True, slots=True)
class Stage:
    query: str
    timeline: Timeline
    scene: SceneSetting
    grounding: Grounding | None = None
