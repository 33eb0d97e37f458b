"""Image prompt optimizer: a long description cut to what an image model can use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tollhouse.generation.prompts._shared import compose, section

if TYPE_CHECKING:
    from tollhouse.generation.agents.image_prompt import ImagePrompt

TARGET_WORDS = 77

SYSTEM = f"""You compress an image description into a prompt of about {TARGET_WORDS} words \
for an image model, which reads the start most closely. Order: main subjects and their \
action, period dress and objects, setting, light, camera and style. Keep every concrete \
period detail and the key elements; drop names, backstory and anything not visible. Turn \
feelings into what a camera sees: not "anxious" but "knuckles white on the console, leaning \
toward the speaker"; not "triumphant" but "fists raised, mouth open mid-shout". No text or \
lettering in the image. Return the prompt and its word_count."""


def user_prompt(image_prompt: ImagePrompt) -> str:
    return compose(section("Description", image_prompt))
