"""Credit prices: defaults (flash-contract §3.2) ← CREDIT_COSTS ← per-project overrides.

Beyond the contract's 18 keys: `dialog` (a role-played exchange of up to ten lines, 2) and
`survey` (every chosen character answers every question, 3). The original charged neither.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tollhouse.db.dialect import upsert
from tollhouse.kit.errors import ValidationFailed
from tollhouse.ledger.models import CreditCostOverride

DEFAULT_COSTS: Mapping[str, int] = {
    "generate_balanced": 5,
    "generate_hd": 10,
    "generate_hyper": 5,
    "generate_gemini3": 5,
    "chat": 1,
    "temporal_jump": 2,
    "conductor_base": 5,
    "conductor_generate": 5,
    "conductor_pro_sim": 15,
    "conductor_pro_capitalization_portfolio": 5,
    "conductor_compare": 10,
    "conductor_campaign_sim": 15,
    "conductor_campaign_survey": 5,
    "conductor_compare_campaigns": 10,
    "quick_sim_per_opportunity": 2,
    "meeting_generation": 1,
    "clockchain_ingest": 1,
    "clockchain_index": 1,
    "dialog": 2,
    "survey": 3,
    # Ours, beside the contract's 18: one /api/v1/eval comparison.
    "eval_compare": 10,
}


class UnknownCostKey(ValidationFailed):
    code = "unknown_cost_key"


def configured_costs(overrides: Mapping[str, int]) -> dict[str, int]:
    unknown = sorted(set(overrides) - set(DEFAULT_COSTS))
    if unknown:
        raise ValueError(f"CREDIT_COSTS names unknown keys: {', '.join(unknown)}")
    return {**DEFAULT_COSTS, **overrides}


async def project_costs(
    session: AsyncSession, project_id: str, configured: Mapping[str, int]
) -> dict[str, int]:
    rows = await session.execute(
        select(CreditCostOverride.key, CreditCostOverride.cost).where(
            CreditCostOverride.project_id == project_id
        )
    )
    return {**configured, **{key: cost for key, cost in rows}}


async def cost_of(
    session: AsyncSession, project_id: str, key: str, configured: Mapping[str, int]
) -> int:
    costs = await project_costs(session, project_id, configured)
    if key not in costs:
        raise UnknownCostKey(f"No cost is defined for {key!r}.")
    return costs[key]


def generation_cost_key(preset: str | None) -> str:
    """Each preset pays its own price; unknown presets pay the default preset's."""
    key = f"generate_{preset or 'balanced'}"
    return key if key in DEFAULT_COSTS else "generate_balanced"


async def set_project_costs(
    session: AsyncSession, project_id: str, costs: Mapping[str, int]
) -> None:
    unknown = sorted(set(costs) - set(DEFAULT_COSTS))
    if unknown:
        raise UnknownCostKey(
            f"Unknown cost keys: {', '.join(unknown)}.", detail={"unknown": unknown}
        )
    for key, cost in costs.items():
        await session.execute(
            upsert(session, CreditCostOverride, ["project_id", "key"], {"cost": cost}).values(
                project_id=project_id, key=key, cost=cost
            )
        )
