"""What compiling produces: a frozen graph of plain tuples and mappings (no networkx), which the
run reads successors, fan-outs, joins and each step's kind from.

Edge kinds: `next`, and those the step kinds add (orch.steps.base.Link): `route:<label>`, `true`,
`false`, `case:<value>`, `default`, `branch` (parallel step to a branch head, and from one step
of a multi-step branch to the next), `body` (loop step to its body steps). Each edge carries
`keys`: the state keys its source writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from orch.definition.expressions import Expression
from orch.definition.spec import Agent, Orchestration, StepBase
from orch.definition.state import StateSchema
from orch.errors import Problem
from orch.steps.base import StepKind


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str
    keys: tuple[str, ...] = ()
    back: bool = False


@dataclass(frozen=True, slots=True)
class FanOut:
    """Where concurrent branches start and where they meet again (None: they never do)."""

    step_id: str
    branches: tuple[tuple[str, ...], ...]  # each branch: head first, then queued steps
    join: str | None
    parallel: bool  # the kind's own branches: its join runs even if every branch ended early


@dataclass(frozen=True, slots=True)
class CompiledStep:
    spec: StepBase
    type: str  # as written in the file, also where the kind differs (sub-orchestrations)
    kind: StepKind  # what runs and routes it, chosen when compiling
    writes: tuple[str, ...]
    reads: frozenset[str]
    next: tuple[str, ...]
    routes: Mapping[str, str | None]  # routers: label → target (None ends the branch)
    expression: Expression | None = None
    fanout: FanOut | None = None
    loop_owner: str | None = None  # set on loop body steps
    on_cycle: bool = False
    # Where branches may meet (SPEC §3.2): `bit` is this step's place in the forward graph, and
    # `merge_mask` (set on steps with several forward predecessors, when the graph fans out) holds
    # the bits of every step that can reach it. A token that arrives here waits while a live
    # token stands on any of those steps.
    bit: int = 0
    merge_mask: int = 0
    queue: tuple[str, ...] = ()  # the steps after this one in its multi-step parallel branch


@dataclass(frozen=True)
class CompiledGraph:
    orchestration: Orchestration
    file: str | None
    version: str
    entry: str
    steps: Mapping[str, CompiledStep]
    edges: tuple[Edge, ...]
    schema: StateSchema
    agents: Mapping[str, Agent]
    cycles: tuple[tuple[str, ...], ...]
    warnings: tuple[Problem, ...] = ()

    @property
    def id(self) -> str:
        return self.orchestration.id


@dataclass
class CompileResult:
    graph: CompiledGraph | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]
