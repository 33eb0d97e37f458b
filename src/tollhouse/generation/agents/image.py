"""Image: the still itself, from the optimized prompt (or the full one when that failed)."""

from __future__ import annotations

from tollhouse.generation.context import RunLLM
from tollhouse.generation.llm.base import Image


async def generate_image(llm: RunLLM, prompt: str) -> Image:
    image = await llm.image(prompt)
    if not image.data:
        raise ValueError("the image model returned no image")
    return image
