"""The contract between the runner and step executors.

An executor is an async callable `(ctx: StepContext) -> StepResult`. It reads the state snapshot
in `ctx.state`, may emit events and record LLM spend through `ctx`, and says what happened by
returning data: the value for `output_key`, a route label for routers, or a gate to pause at.
It never writes state or talks to the store; the runner does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol

from orch.events import Event
from orch.definition.spec import StepBase

if TYPE_CHECKING:
    from orch.definition.compile import CompiledGraph, CompiledStep
    from orch.services import Services

NO_OUTPUT: Any = type("NoOutput", (), {"__repr__": lambda self: "NO_OUTPUT"})()


@dataclass(frozen=True, slots=True)
class GateRequest:
    """Pause here until a person answers (SPEC §3.5)."""

    prompt: str
    fields: list[dict[str, Any]]
    agent_context: str
    timeout_seconds: float
    child_run_id: str | None = None  # a gate inside a sub-orchestration


@dataclass(slots=True)
class StepResult:
    output: Any = NO_OUTPUT
    route: str | None = None  # routers: the chosen label / "true" / "false" / case value
    reasoning: str = ""
    turns: int = 0
    cost_usd: float = 0.0
    gate: GateRequest | None = None
    extra_writes: dict[str, Any] = field(default_factory=dict)


class StepContext(Protocol):
    run_id: str
    graph: "CompiledGraph"
    step: "CompiledStep"
    state: Mapping[str, Any]
    iteration: int
    services: "Services"
    last_output: Any

    @property
    def spec(self) -> StepBase: ...

    def emit(self, event: Event) -> None: ...

    def add_cost(self, amount: float) -> None:
        """Record spend of one LLM call; raises CostLimitExceeded over the run's limit."""

    def check_budget(self) -> None:
        """Raise if the run can no longer start an LLM call (cost limit already hit)."""

    async def run_substep(self, step_id: str, state: Mapping[str, Any], iteration: int) -> StepResult:
        """Run another step of this graph as part of this one (loop bodies)."""


Executor = Callable[[StepContext], Awaitable[StepResult]]
EXECUTOR_TABLE = Mapping[str, Executor]
