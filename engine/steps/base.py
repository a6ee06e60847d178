"""The contract of a step kind, and between the run and step executors.

A `StepKind` says everything the engine needs to know about one step type: the Struct its steps
decode to, the checks of its fields, the state keys it reads and writes, the labels it routes by
and where each leads, whether it fans out, and the executor that runs it. The compiler, the
validator, the scheduler and the engine dispatch through a table of kinds (orch.steps builds the
standard one), so a new step type is one module and one table entry.

An executor is an async callable `(ctx: StepContext) -> StepResult`. It reads the state snapshot
in `ctx.state`, may emit events and record LLM spend through `ctx`, and says what happened by
returning data: the value for `output_key`, a route label for routers, or a gate to pause at.
It never writes state or talks to the store; the run does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Container, Iterable, Literal, Mapping, NamedTuple, Protocol

from orch.definition.expressions import Expression
from orch.definition.spec import Agent, Orchestration, StepBase
from orch.definition.state import ANY, StateSchema, TypeSpec
from orch.definition.templates import template_keys
from orch.errors import Severity
from orch.events import Event

if TYPE_CHECKING:
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


class StepView(Protocol):
    """What executors and routing see of a compiled step (orch.definition.compiled.CompiledStep)."""

    @property
    def spec(self) -> StepBase: ...
    @property
    def writes(self) -> tuple[str, ...]: ...
    @property
    def next(self) -> tuple[str, ...]: ...
    @property
    def routes(self) -> Mapping[str, str | None]: ...
    @property
    def expression(self) -> Expression | None: ...


class GraphView(Protocol):
    """What executors see of the compiled graph (orch.definition.compiled.CompiledGraph)."""

    @property
    def orchestration(self) -> Orchestration: ...
    @property
    def steps(self) -> Mapping[str, StepView]: ...
    @property
    def schema(self) -> StateSchema: ...
    @property
    def agents(self) -> Mapping[str, Agent]: ...


class ChildRun(Protocol):
    """What a sub-orchestration step learns of its child run when it stops."""

    status: str
    response: Any
    total_cost_usd: Any
    step_history: Any
    human_input_required: Any


class ChildRuns(Protocol):
    """Starting and following child runs (sub-orchestrations); the engine provides it."""

    @property
    def closing(self) -> bool:
        """The engine is shutting down: a child left running recovers with its parent."""

    async def start_child(self, orchestration_id: str, message: str, *, parent: tuple[str, str, int],
                          idempotency_key: str) -> str: ...

    async def wait(self, run_id: str) -> ChildRun: ...

    async def cancel_child(self, run_id: str) -> None:
        """Stop a child run; one that has already stopped is left as it is."""

    async def gate_deadline(self, run_id: str) -> float | None: ...


class StepContext(Protocol):
    run_id: str
    state: Mapping[str, Any]
    iteration: int
    services: "Services"
    last_output: Any
    key: str  # names this execution within the run: "step#iteration", "loop#i/body#j" in loops
    depth: int  # how deeply this run nests in sub-orchestrations (0: a top-level run)
    children: ChildRuns

    @property
    def graph(self) -> GraphView: ...

    @property
    def step(self) -> StepView: ...

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


class FieldReport(Protocol):
    """Where a kind's field checks report problems of one step, and what they may look at."""

    @property
    def tools(self) -> Container[str] | None:
        """Names of the registered tools; None when the caller did not say (no tool checks)."""

    def add(self, code: str, message: str, hint: str | None = None, *, severity: Severity = "error") -> None: ...

    def need(self, field_name: str, ok: bool, hint: str) -> None:
        """A `missing-field` problem ("<type> step needs '<field>'") unless `ok`."""

    def step(self, step_id: str) -> tuple[StepBase, StepKind] | None:
        """Another step of the graph and its kind, if there is one by that id."""


class Link(NamedTuple):
    """An edge a step adds to the graph besides `next_step_id`: `edge` is its kind in the
    compiled graph (route:<label>, true, case:<value>, branch, body, …) and `field` names
    where the target was written, for the problem if it is not a step. `target` None or ""
    means no edge (a route that ends the branch)."""

    source: str
    target: str | None
    edge: str
    field: str


class Body(NamedTuple):
    """Steps a step runs itself, in order, as part of its own execution (a loop's body), and
    the state keys it gives them beyond the state (the current item)."""

    steps: tuple[str, ...]
    keys: frozenset[str] = frozenset()


Shape = Literal["step", "decision", "gate", "group", "stop"]  # how diagrams draw a kind


def declared_reads(spec: StepBase, expression: Expression | None) -> set[str]:
    """The keys a step reads by default: its `input_keys`."""
    return set(spec.input_keys)


def prompt_reads(spec: StepBase, *texts: str | None) -> set[str]:
    """`input_keys` and the keys of every {state.key} placeholder in `texts`."""
    reads = set(spec.input_keys)
    for text in texts:
        if text:
            reads |= template_keys(text)
    return reads


def output_writes(spec: StepBase) -> tuple[str, ...]:
    """The keys a step writes by default: its `output_key`, if set."""
    return (spec.output_key,) if spec.output_key else ()


def no_writes(spec: StepBase) -> tuple[str, ...]:
    return ()


def any_output(spec: StepBase) -> TypeSpec:
    return ANY


def no_field_checks(spec: StepBase, report: FieldReport) -> None:
    return None


def no_links(spec: StepBase, known: Container[str]) -> Iterable[Link]:
    return ()


def carry_on(step: StepView, label: str | None) -> tuple[str, ...] | None:
    """The route of a step that does not route: on to its next step (None, see StepKind.route)."""
    return None


def ends_branch(step: StepView, label: str | None) -> tuple[str, ...] | None:
    return ()


@dataclass(frozen=True, slots=True)
class StepKind:
    """One step type: what compiling, validating, scheduling and running it need to know.

    Every hook takes the step's decoded spec (an instance of `spec`). Defaults fit a step that
    reads its `input_keys`, writes its `output_key` and goes on to its `next_step_id`.
    """

    name: str  # the `type` of its steps in graph files, or an internal name (see `in_files`)
    spec: type[StepBase]  # the Struct its steps decode to (orch.definition.spec)
    executor: Executor
    check_fields: Callable[[StepBase, FieldReport], None] = no_field_checks
    reads: Callable[[StepBase, Expression | None], set[str]] = declared_reads
    writes: Callable[[StepBase], tuple[str, ...]] = output_writes
    output_type: Callable[[StepBase], TypeSpec] = any_output  # of the value for output_key
    # The field holding an expression the compiler parses (steps get it as step.expression).
    expression_field: str | None = None
    # Routers: label → target (None ends the branch). Their next_step_id is where they go when
    # the label picks nothing, and a list there does not fan out.
    routes: Callable[[StepBase], Mapping[str, str | None]] | None = None
    # Where a finished step goes for the label its executor returned: the targets, () to end
    # the branch, or None for "as if no label": on to its next step (or on down its branch).
    route: Callable[[StepView, str | None], tuple[str, ...] | None] = carry_on
    links: Callable[[StepBase, Container[str]], Iterable[Link]] = no_links  # edges besides next
    # Concurrent branches the step starts (a parallel step): each a list of step ids.
    branches: Callable[[StepBase], tuple[tuple[str, ...], ...]] | None = None
    body: Callable[[StepBase], Body] | None = None
    list_input: Callable[[StepBase], str | None] | None = None  # a state key it reads as a list
    # Decided when compiling: the name of another kind of the table that runs this step instead.
    runs_as: Callable[[StepBase, Mapping[str, Agent]], str | None] | None = None
    uses_agent: bool = False  # its agent_id names an agent (checked when compiling)
    pauses: bool = False  # it can stop the run for a person's answer: a cycle through it is steered
    terminal: bool = False  # the branch ends here: no next step, never a meeting point
    limited: bool = True  # max_turns, timeout_seconds and retry apply (checked when compiling)
    in_loop: bool = True  # may be part of a loop body
    announces_route: bool = False  # the run emits routing_decision for it (others emit their own)
    shape: Shape = "step"

    @property
    def in_files(self) -> bool:
        """Whether graph files name it as a step type (its name is its Struct's tag)."""
        return self.spec.__struct_config__.tag == self.name

    @property
    def is_router(self) -> bool:
        return self.routes is not None

    def fans_out(self, spec: StepBase) -> bool:
        """Whether a finished step starts concurrent branches: its own, or one per next step."""
        if self.branches is not None:
            return True
        return len(spec.next_ids) > 1 and not self.is_router and not self.terminal


def spec_types(kinds: Mapping[str, StepKind]) -> dict[str, type[StepBase]]:
    """The step types graph files may use with this table, and the Struct each decodes to."""
    return {name: kind.spec for name, kind in kinds.items() if kind.in_files}
