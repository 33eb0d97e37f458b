"""Camera: shot, angle, lens and composition of the still (needs only the scene)."""

from __future__ import annotations

from pydantic import BaseModel

from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import camera as prompt


class CameraSetup(BaseModel):
    shot: str
    angle: str
    lens: str
    composition: str
    focal_subject: str
    depth_of_field: str = ""
    lighting_setup: str = ""


async def frame_shot(llm: RunLLM, stage: Stage) -> CameraSetup:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(stage), CameraSetup, max_tokens=768
    )
