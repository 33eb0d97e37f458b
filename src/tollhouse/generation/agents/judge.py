"""Judge: classify the query and refuse what cannot (or must not) become a scene."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tollhouse.generation.context import RunLLM
from tollhouse.generation.pipeline import Rejected
from tollhouse.generation.prompts import judge as prompt

QueryType = Literal[
    "historical", "fictional", "speculative", "contemporary", "personal_future", "invalid"
]

# Words in a rejection's reason that show the judge drifted into refusing a query that is
# merely speculative or personal: such queries are stageable, so the rejection is undone.
DRIFT_MARKERS = ("speculative", "personal", "future event", "uncertain outcome", "lacks concrete")


class JudgeVerdict(BaseModel):
    query_type: QueryType
    is_valid: bool
    cleaned_query: str
    confidence: float = Field(ge=0, le=1)
    reason: str = ""
    suggested_query: str | None = None
    detected_year: int | None = None
    detected_location: str | None = None
    detected_figures: list[str] = Field(default_factory=list)
    # Refused for safety: never undone by the drift override.
    unsafe: bool = False


def override_drift(verdict: JudgeVerdict) -> JudgeVerdict:
    reason = verdict.reason.lower()
    if verdict.is_valid or verdict.unsafe or not any(m in reason for m in DRIFT_MARKERS):
        return verdict
    query_type = "speculative" if verdict.query_type == "invalid" else verdict.query_type
    return verdict.model_copy(update={"is_valid": True, "query_type": query_type})


async def judge(llm: RunLLM, query: str, *, model: str) -> JudgeVerdict:
    """The verdict on a valid query; raises Rejected (the run's whole error) otherwise."""
    verdict = override_drift(
        await llm.structured(
            prompt.SYSTEM, prompt.user_prompt(query), JudgeVerdict, model=model, max_tokens=512
        )
    )
    if not verdict.is_valid:
        raise Rejected(f"Query rejected by judge: {verdict.reason or 'no reason given'}")
    if not verdict.cleaned_query.strip():
        verdict = verdict.model_copy(update={"cleaned_query": query})
    return verdict
