"""/api/v1/eval: compare models on one prompt (flash-contract §1.7).

Operator-only unless EVAL_OPEN_TO_USERS: callers holding the service or admin key. Paid
with the `eval_compare` cost when the caller acts for a user (service key + X-User-ID, or
any user when open): held before the models run, captured when at least one answered,
released when none did (502 `eval_failed`, the per-model errors in `detail`).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from tollhouse.db.session import SessionDep
from tollhouse.generation import evaluation
from tollhouse.generation.errors import EvalFailed, OperatorOnly
from tollhouse.generation.launch import generations
from tollhouse.generation.runs import Generations
from tollhouse.generation.schemas import (
    CompareRequest,
    Comparison,
    ComparisonReport,
    EvalModels,
)
from tollhouse.identity.caller import Caller, CallerKind, GatewayCaller
from tollhouse.ledger.charging import hold_charge

router = APIRouter(prefix="/api/v1/eval", tags=["eval"])

OPERATORS = frozenset({CallerKind.SYSTEM, CallerKind.SERVICE, CallerKind.ADMIN})


def _sets(domain: Generations) -> dict[str, list[str]]:
    settings = domain.settings
    extra = [m for m in (settings.permissive_text_model, settings.llm_model) if m]
    return evaluation.model_sets(domain.presets, domain.router, extra)


def _allow(domain: Generations, caller: Caller) -> None:
    if not domain.settings.eval_open_to_users and caller.kind not in OPERATORS:
        raise OperatorOnly()


async def _compare(
    body: CompareRequest, request: Request, caller: Caller, session: SessionDep
) -> Comparison:
    domain = generations(request)
    _allow(domain, caller)
    domain.require_provider()
    models = body.models or _sets(domain)[body.preset]
    if not models:
        raise EvalFailed(f"No configured provider serves a model of the {body.preset!r} set.")
    charge = await hold_charge(
        request,
        caller,
        session,
        "eval_compare",
        # An LLM spend like any other: the ledger's types stay as they are.
        "generation",
        reference_id=f"eval_{uuid.uuid4().hex[:12]}",
        description=f"Compare {len(models)} models: {body.query[:60]}",
    )
    # Committed before the models run: the hold outlives whatever happens next.
    await session.commit()
    try:
        comparison = await evaluation.compare(
            domain.router,
            domain.models,
            body.query,
            models,
            limit_seconds=body.timeout_seconds,
        )
    except BaseException:
        await charge.release()
        raise
    if comparison.succeeded == 0:
        await charge.release()
        raise EvalFailed(detail=[run.model_dump() for run in comparison.results])
    await charge.capture()
    return comparison


@router.post("/compare", response_model=Comparison)
async def compare(
    body: CompareRequest, request: Request, caller: GatewayCaller, session: SessionDep
) -> Comparison:
    return await _compare(body, request, caller, session)


@router.post("/compare/report", response_model=ComparisonReport)
async def compare_report(
    body: CompareRequest, request: Request, caller: GatewayCaller, session: SessionDep
) -> ComparisonReport:
    comparison = await _compare(body, request, caller, session)
    return ComparisonReport(comparison=comparison, report=evaluation.report(comparison))


@router.get("/models", response_model=EvalModels)
async def eval_models(request: Request, caller: GatewayCaller) -> EvalModels:
    domain = generations(request)
    _allow(domain, caller)
    sets = _sets(domain)
    return EvalModels(
        presets={name: len(models) for name, models in sets.items()},
        models=sets["all"],
        sets=sets,
    )
