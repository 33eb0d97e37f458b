"""Model comparison (flash-contract §1.7 `/eval`): one prompt on several models at once,
with latency statistics and a ranking. A model that fails or times out is a result, not an
error: the comparison reports it (the contract answered 500).

Model sets: `verified` — every preset's text model; `google_native` / `openrouter` — those
that provider serves; `all` — every configured text model on any provider.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Mapping, Sequence
from typing import Literal

from tollhouse.generation.llm.base import Sampling, TextRequest
from tollhouse.generation.llm.router import LLMRouter, LLMUnavailable, NoLLMProvider
from tollhouse.generation.model_registry import ModelRegistry
from tollhouse.generation.presets import Preset
from tollhouse.generation.schemas import (
    Comparison,
    LatencyStats,
    ModelRun,
    RankedModel,
)

ModelSet = Literal["verified", "google_native", "openrouter", "all"]
MODEL_SETS: tuple[ModelSet, ...] = ("verified", "google_native", "openrouter", "all")
SYSTEM = "You are a careful historian. Answer concisely and accurately."
MAX_TOKENS = 1024
PROVIDER_OF_SET = {"google_native": "google", "openrouter": "openrouter"}


def model_sets(
    presets: Mapping[str, Preset], router: LLMRouter, extra: Sequence[str]
) -> dict[str, list[str]]:
    verified = sorted({preset.text_model for preset in presets.values()})
    every = sorted(set(verified) | set(extra))
    sets: dict[str, list[str]] = {"verified": verified, "all": every}
    for name, provider_name in PROVIDER_OF_SET.items():
        provider = next((p for p in router.providers if p.name == provider_name), None)
        sets[name] = [m for m in every if provider is not None and provider.serves(m)]
    return sets


async def _run(router: LLMRouter, model: str, prompt: str, limit_seconds: float) -> ModelRun:
    request = TextRequest(
        model=model, system=SYSTEM, prompt=prompt, sampling=Sampling(max_tokens=MAX_TOKENS)
    )
    try:
        async with asyncio.timeout(limit_seconds):
            reply = await router.text(request)
    except TimeoutError:
        return ModelRun(model=model, success=False, error=f"timed out after {limit_seconds:g} s")
    except (LLMUnavailable, NoLLMProvider) as exc:
        return ModelRun(model=model, success=False, error=str(exc))
    return ModelRun(
        model=model,
        success=True,
        provider=reply.provider,
        served_as=reply.model,
        latency_ms=reply.latency_ms,
        output=reply.value,
        output_length=len(reply.value),
        input_tokens=reply.usage.input_tokens,
        output_tokens=reply.usage.output_tokens,
    )


def _stats(latencies: list[int]) -> LatencyStats | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return LatencyStats(
        min_ms=ordered[0],
        max_ms=ordered[-1],
        mean_ms=round(statistics.fmean(ordered)),
        median_ms=round(statistics.median(ordered)),
        stdev_ms=round(statistics.pstdev(ordered)),
    )


async def compare(
    router: LLMRouter,
    registry: ModelRegistry,
    query: str,
    models: Sequence[str],
    *,
    limit_seconds: float,
) -> Comparison:
    runs = list(await asyncio.gather(*(_run(router, m, query, limit_seconds) for m in models)))
    ok = sorted((run for run in runs if run.success), key=lambda run: run.latency_ms or 0)
    for run in ok:
        registry.latencies[run.model] = run.latency_ms or 0
    return Comparison(
        query=query,
        models=list(models),
        results=runs,
        succeeded=len(ok),
        failed=len(runs) - len(ok),
        latency=_stats([run.latency_ms or 0 for run in ok]),
        ranking=[
            RankedModel(rank=rank, model=run.model, latency_ms=run.latency_ms or 0)
            for rank, run in enumerate(ok, start=1)
        ],
        fastest=ok[0].model if ok else None,
        slowest=ok[-1].model if ok else None,
    )


def report(comparison: Comparison) -> str:
    """The comparison as a plain-text table, fastest first, failures last."""
    header = f"{'rank':<5} {'model':<44} {'latency':>9} {'chars':>7}  status"
    lines = [f"Query: {comparison.query}", header, "-" * len(header)]
    ranks = {entry.model: entry.rank for entry in comparison.ranking}
    ordered = sorted(comparison.results, key=lambda r: ranks.get(r.model, len(ranks) + 1))
    for run in ordered:
        rank = str(ranks[run.model]) if run.model in ranks else "-"
        latency = f"{run.latency_ms} ms" if run.success else "-"
        chars = str(run.output_length) if run.success else "-"
        status = "ok" if run.success else f"failed: {run.error}"
        lines.append(f"{rank:<5} {run.model[:44]:<44} {latency:>9} {chars:>7}  {status}")
    if comparison.latency is not None:
        stats = comparison.latency
        lines.append(
            f"latency: min {stats.min_ms} ms, median {stats.median_ms} ms, "
            f"mean {stats.mean_ms} ms, max {stats.max_ms} ms"
        )
    lines.append(f"{comparison.succeeded} succeeded, {comparison.failed} failed")
    return "\n".join(lines)
