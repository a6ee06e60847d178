"""Running one step: what the executor sees (StepCtx) and how it is run (timeout, retry)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping, Protocol

from orch.definition.compiled import CompiledGraph, CompiledStep
from orch.errors import EngineError, ProviderError, RunError, StepFailed, StepTimeout, ToolError
from orch.events import Event, StepError
from orch.run.model import StepRecord
from orch.services import Services
from orch.steps.base import ChildRuns, Executor, StepResult


class StepHost(Protocol):
    """What a step context needs of the run's driver."""

    run_id: str
    graph: CompiledGraph
    depth: int
    services: Services
    children: ChildRuns

    @property
    def last_output(self) -> Any: ...

    @property
    def failure(self) -> RunError | None: ...

    def emit(self, event: Event) -> None: ...

    def add_cost(self, amount: float, step_id: str) -> None: ...

    def executor_for(self, step: CompiledStep) -> Executor: ...

    async def run_substep(self, parent: "StepCtx", step_id: str, state: Mapping[str, Any],
                          iteration: int) -> StepResult: ...


class StepCtx:
    """What one step execution sees (the StepContext protocol)."""

    def __init__(self, driver: StepHost, step: CompiledStep, state: Mapping[str, Any], iteration: int, *,
                 key: str | None = None) -> None:
        self.driver = driver
        # Names this execution within the run (stable across a crash or a gate re-entry):
        # "step#iteration", and "loop#i/body#j" inside loops.
        self.key = key or f"{step.spec.id}#{iteration}"
        self.started = time.time()
        self.body: list[StepRecord] = []  # records of loop body executions, in order
        self.run_id = driver.run_id
        self.graph = driver.graph
        self.step = step
        self.state = state
        self.iteration = iteration
        self.services = driver.services
        self.children = driver.children
        self.depth = driver.depth
        self.last_output = driver.last_output
        self.cost = 0.0
        self.turns = 0

    @property
    def spec(self) -> Any:
        return self.step.spec

    def emit(self, event: Event) -> None:
        self.driver.emit(event)

    def add_cost(self, amount: float) -> None:
        self.cost += amount
        self.driver.add_cost(amount, self.step.spec.id)

    def check_budget(self) -> None:
        if self.driver.failure is not None:
            raise self.driver.failure

    async def run_substep(self, step_id: str, state: Mapping[str, Any], iteration: int) -> StepResult:
        return await self.driver.run_substep(self, step_id, state, iteration)


async def execute_step(driver: StepHost, step: CompiledStep, ctx: StepCtx) -> tuple[StepResult | None, EngineError | None]:
    """Run the executor with the step's timeout and retry policy; never raises EngineError."""
    spec = step.spec
    executor = driver.executor_for(step)
    policy = spec.retry
    attempts = policy.attempts if policy else 1
    for attempt in range(1, attempts + 1):
        try:
            async with asyncio.timeout(spec.timeout_seconds):
                result = await executor(ctx)
            ctx.turns = max(ctx.turns, result.turns)
            return result, None
        except TimeoutError:
            return None, StepTimeout(f"step {spec.id} exceeded its timeout of {spec.timeout_seconds:g}s",
                                     step_id=spec.id)
        except (ProviderError, ToolError) as exc:
            if exc.retryable and attempt < attempts and driver.failure is None:
                assert policy is not None
                driver.emit(StepError(step_id=spec.id, error=exc.message, will_retry=True))
                await asyncio.sleep(min(policy.backoff_seconds * 2 ** (attempt - 1), policy.max_backoff_seconds))
                continue
            exc.step_id = exc.step_id or spec.id
            return None, exc
        except EngineError as exc:
            return None, exc
        except Exception as exc:  # noqa: BLE001 - a bug in an executor fails its step, not the engine
            return None, StepFailed(f"step {spec.id} raised {type(exc).__name__}: {exc}", step_id=spec.id)
    raise AssertionError("unreachable")
