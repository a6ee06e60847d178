"""What a run's driver needs of the engine that hosts it (the `RunHost` protocol), so that the
driver, the step contexts and the replay never import the engine: the engine implements it."""

from __future__ import annotations

from typing import Protocol

from orch.definition.compiled import CompiledStep
from orch.events import EventHub
from orch.services import Services
from orch.steps.base import ChildRuns, Executor
from orch.store.base import RunStore


class RunHost(Protocol):
    @property
    def store(self) -> RunStore: ...

    @property
    def hub(self) -> EventHub: ...

    @property
    def services(self) -> Services: ...

    @property
    def children(self) -> ChildRuns:
        """Starts and follows the runs of sub-orchestration steps."""

    def executor_for(self, step: CompiledStep) -> Executor: ...
