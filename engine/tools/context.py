"""What the engine hands a tool that asks for it (a parameter annotated `ToolContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class ToolContext:
    """The run, its sandbox and its state; `attempt` names this execution of the call (run,
    step, iteration, call), the same when a crashed run executes it again, so a tool with side
    effects can recognise a repeat."""

    run_id: str
    sandbox_dir: Path
    state: Mapping[str, Any] = field(default_factory=dict)
    attempt: str = ""

    def __post_init__(self) -> None:
        # Tools may look at the run's state but only steps write it.
        if not isinstance(self.state, MappingProxyType):
            object.__setattr__(self, "state", MappingProxyType(self.state))
