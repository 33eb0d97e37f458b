"""Image prompt optimizer: ~77 words, emotions turned into posture and expression."""

from __future__ import annotations

from pydantic import BaseModel

from tollhouse.generation.agents.image_prompt import ImagePrompt
from tollhouse.generation.context import RunLLM
from tollhouse.generation.prompts import image_prompt_optimizer as prompt


class OptimizedPrompt(BaseModel):
    prompt: str
    word_count: int = 0


async def optimize_image_prompt(llm: RunLLM, image_prompt: ImagePrompt) -> OptimizedPrompt:
    return await llm.structured(
        prompt.SYSTEM, prompt.user_prompt(image_prompt), OptimizedPrompt, max_tokens=512
    )
