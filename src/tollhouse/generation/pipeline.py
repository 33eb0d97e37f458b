"""The DAG runner: the one path every generation takes (sync, async and streamed alike).

Steps declare what they need; a step starts as soon as everything it needs has settled
(completed, skipped, or failed without being critical), so independent steps run side by
side. How many LLM calls run at once is the run context's business (the preset's
parallelism), not the runner's. A critical failure cancels what is still running and fails
the run; a non-critical failure is reported and the run goes on without that result.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar


class RunContext(Protocol):
    results: dict[str, Any]


C = TypeVar("C", bound=RunContext)

StepStatus = Literal["completed", "failed", "skipped"]


class StepFailed(Exception):
    """A step could not produce its result; the message says why, for people."""


class Rejected(StepFailed):
    """The input itself was refused (the judge): its message is the run's whole error."""


@dataclass(slots=True)
class StepStats:
    """LLM accounting of one step, filled by the context's LLM wrapper while the step runs."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    provider: str | None = None
    model: str | None = None
    # Sum of the calls' own latencies (a step running calls in parallel takes less wall time).
    llm_ms: int = 0


current_stats: contextvars.ContextVar[StepStats | None] = contextvars.ContextVar(
    "current_step_stats", default=None
)


@dataclass(frozen=True, slots=True)
class Step(Generic[C]):
    name: str
    run: Callable[[C], Awaitable[Any]]
    needs: tuple[str, ...] = ()
    critical: bool = True
    # Decided when the step becomes ready (it may read earlier results); False skips it.
    when: Callable[[C], bool] | None = None
    # Where a client's progress bar stands once this step is done (0-100).
    progress: int = 0


@dataclass(slots=True)
class StepOutcome:
    name: str
    status: StepStatus
    progress: int
    critical: bool
    latency_ms: int = 0
    error: str | None = None
    stats: StepStats = field(default_factory=StepStats)


@dataclass(slots=True)
class RunResult:
    outcomes: dict[str, StepOutcome]
    # Set when a critical step failed: "step: message; …", or a rejection's own message.
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


OnStep = Callable[[StepOutcome], Awaitable[None]]


class Graph(Generic[C]):
    def __init__(self, steps: Iterable[Step[C]]) -> None:
        self.steps: dict[str, Step[C]] = {}
        for step in steps:
            if step.name in self.steps:
                raise ValueError(f"step {step.name!r} is declared twice")
            self.steps[step.name] = step
        for step in self.steps.values():
            unknown = set(step.needs) - set(self.steps)
            if unknown:
                raise ValueError(f"step {step.name!r} needs unknown steps {sorted(unknown)}")
        self.order = self._topological_order()

    def _topological_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                raise ValueError(f"cycle in the step graph: {' -> '.join((*path, name))}")
            state[name] = "visiting"
            for need in self.steps[name].needs:
                visit(need, (*path, name))
            state[name] = "done"
            order.append(name)

        for name in self.steps:
            visit(name, ())
        return order

    def longest_path(self, weight: Callable[[Step[C]], float]) -> float:
        """The critical path's length, each step weighing `weight(step)`."""
        finish: dict[str, float] = {}
        for name in self.order:
            step = self.steps[name]
            start = max((finish[need] for need in step.needs), default=0.0)
            finish[name] = start + weight(step)
        return max(finish.values(), default=0.0)

    async def run(self, context: C, on_step: OnStep) -> RunResult:
        outcomes: dict[str, StepOutcome] = {}
        running: dict[asyncio.Task[Any], Step[C]] = {}
        pending = list(self.order)
        failures: list[StepOutcome] = []
        rejection: str | None = None

        def ready(step: Step[C]) -> bool:
            return all(need in outcomes for need in step.needs)

        try:
            while pending or running:
                for name in [n for n in pending if ready(self.steps[n])]:
                    pending.remove(name)
                    step = self.steps[name]
                    if step.when is not None and not step.when(context):
                        outcomes[name] = StepOutcome(name, "skipped", step.progress, step.critical)
                        context.results[name] = None
                        continue
                    running[asyncio.create_task(_timed(step, context), name=name)] = step
                if not running:
                    continue  # skipped steps may have made others ready
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step = running.pop(task)
                    outcome, value, rejected = task.result()
                    outcomes[step.name] = outcome
                    context.results[step.name] = value
                    await on_step(outcome)
                    if outcome.status == "failed" and step.critical:
                        failures.append(outcome)
                        rejection = rejection or rejected
                if failures:
                    break
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if rejection is not None:
            return RunResult(outcomes, rejection)
        if failures:
            return RunResult(outcomes, "; ".join(f"{o.name}: {o.error}" for o in failures))
        return RunResult(outcomes)


async def _timed(step: Step[C], context: C) -> tuple[StepOutcome, Any, str | None]:
    """Run one step with its own stats; never raises except on cancellation."""
    stats = StepStats()
    current_stats.set(stats)  # this task's own copy of the context
    started = time.perf_counter()
    value: Any = None
    error: str | None = None
    rejected: str | None = None
    try:
        value = await step.run(context)
    except Rejected as exc:
        error = rejected = str(exc)
    except Exception as exc:  # a step's failure is data, reported in the outcome
        error = str(exc) or type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000)
    status: StepStatus = "failed" if error is not None else "completed"
    outcome = StepOutcome(step.name, status, step.progress, step.critical, latency_ms, error, stats)
    return outcome, value, rejected
