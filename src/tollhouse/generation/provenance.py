"""Which models and provider really made a scene (flash-contract §1.3 provenance fields).

The preset names the models a run asks for; the router may serve them under another id
(`LLM_MODEL`) or fall back to another provider. What the steps' replies say is what counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tollhouse.generation.pipeline import StepOutcome
from tollhouse.generation.presets import is_open_weight

IMAGE_STEP = "image_generation"


@dataclass(frozen=True, slots=True)
class Provenance:
    text_model: str | None
    image_model: str | None
    provider: str | None
    permissiveness: str


def permissiveness(*models: str | None) -> str:
    """permissive when every model that ran is open-weight; restricted when one is not."""
    ran = [model for model in models if model]
    if not ran:
        return "unknown"
    return "permissive" if all(is_open_weight(model) for model in ran) else "restricted"


def of_run(outcomes: Iterable[StepOutcome]) -> Provenance:
    """The text model most steps were answered by, its provider, and the image's model."""
    text: Counter[tuple[str, str | None]] = Counter()
    image_model: str | None = None
    for outcome in outcomes:
        if outcome.status != "completed" or outcome.stats.model is None:
            continue
        if outcome.name == IMAGE_STEP:
            image_model = outcome.stats.model
        else:
            text[(outcome.stats.model, outcome.stats.provider)] += 1
    text_model, provider = text.most_common(1)[0][0] if text else (None, None)
    return Provenance(text_model, image_model, provider, permissiveness(text_model, image_model))
