"""Image prompt: one detailed picture description built from every earlier result."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tollhouse.generation.agents.camera import CameraSetup
from tollhouse.generation.agents.cast import Cast
from tollhouse.generation.agents.dialog import DialogLine
from tollhouse.generation.agents.moment import DramaticMoment
from tollhouse.generation.agents.stage import Stage
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import image_prompt as prompt


class ImagePrompt(BaseModel):
    prompt: str
    style: str = ""
    key_elements: list[str] = Field(default_factory=list)


async def describe_image(
    llm: RunLLM,
    stage: Stage,
    cast: Cast | None,
    moment: DramaticMoment | None,
    camera: CameraSetup | None,
    dialog: list[DialogLine],
) -> ImagePrompt:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(stage, cast, moment, camera, dialog), ImagePrompt
    )
