"""Image prompt: everything the scene agents decided, as one picture description."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import (
    PERIOD_RULE,
    SAFETY_RULE,
    compose,
    profiles,
    section,
)

if TYPE_CHECKING:
    from tollhouse.generation.agents.camera import CameraSetup
    from tollhouse.generation.agents.cast import Cast
    from tollhouse.generation.agents.dialog import DialogLine
    from tollhouse.generation.agents.moment import DramaticMoment
    from tollhouse.generation.agents.stage import Stage

SYSTEM = f"""You write the prompt for a photorealistic historical image. Merge the setting, \
the people (appearance, period dress, position in the frame, what each is doing), the beat, \
the camera and the light into one vivid description in present tense, subjects first, then \
setting, then light and lens. Describe what a camera would record: no text or captions in \
the image, no names the viewer could not see. Also list key_elements (the must-have \
details), and a style line (photographic process or medium fitting the period). \
{PERIOD_RULE} {SAFETY_RULE}"""


def user_prompt(
    stage: Stage,
    cast: Cast | None,
    moment: DramaticMoment | None,
    camera: CameraSetup | None,
    dialog: list[DialogLine],
) -> str:
    return compose(
        f"Moment: {stage.query}",
        section("When and where", stage.timeline),
        section("Setting", stage.scene),
        profiles("People", cast.bios if cast else []),
        section("Relationships", cast.graph if cast else None),
        section("The beat", moment),
        section("Camera", camera),
        section("What is being said", dialog),
    )
