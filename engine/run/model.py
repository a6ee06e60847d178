"""The run model: what the store keeps of a run and hands back, typed.

Every layer above the store works with these records: the engine, the server's routes and the
CLI. A `Run` is one run as stored; `StepRecord` one step execution (its state delta in
`writes`); `Gate` a question waiting for a person; a `Checkpoint` one transaction's worth of a
run's progress, written under the run's `epoch` (fencing: a writer whose epoch moved on has lost
the run and changes nothing).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class RunStatus(enum.StrEnum):
    """Where a run stands. `running` and `paused` are live; the other three are final."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
LIVE = frozenset({RunStatus.RUNNING, RunStatus.PAUSED})


class StepStatus(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    INPUT = "input"  # the run's first record: its initial state


class Gate(msgspec.Struct, kw_only=True):
    """A human step waiting for its answer (SPEC §3.5)."""

    step_id: str
    prompt: str
    fields: list[dict[str, Any]]
    agent_context: str
    deadline: float
    started_at: float
    iteration: int
    child_run_id: str | None = None  # the gate is inside this sub-orchestration run


class StepRecord(msgspec.Struct, kw_only=True):
    run_id: str
    idx: int
    step_id: str
    step_name: str
    type: str
    status: str
    iteration: int
    turns: int
    cost_usd: float
    started_at: float
    ended_at: float
    output_key: str | None = None
    error: str | None = None
    writes: bytes = b"{}"  # the step's state delta, JSON


class Run(msgspec.Struct, kw_only=True):
    id: str
    orchestration_id: str
    version: str
    status: RunStatus
    message: str = ""
    frontier: bytes = b""  # the scheduler's frontier (engine.run.scheduler), empty in run lists
    state: dict[str, Any] | None = None  # kept once the run stops running; else rebuilt from records
    gates: dict[str, Gate] = {}
    response: str | None = None
    error: str | None = None
    cost_usd: float = 0.0
    turns: int = 0
    steps_done: int = 0
    last_seq: int = 0
    active_seconds: float = 0.0
    gate_deadline: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    epoch: int = 0
    owner: str | None = None
    lease_until: float | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    depth: int = 0

    def next_gate(self) -> Gate | None:
        """The gate a resume without a step id answers: the one due first."""
        return min(self.gates.values(), key=lambda g: g.deadline) if self.gates else None


class Checkpoint(msgspec.Struct, kw_only=True):
    """One transaction: the run's progress, the step records and the events it emitted. Fields
    left UNSET keep their stored value; `status` set to a new value is the run's transition."""

    run_id: str
    epoch: int
    frontier: bytes
    cost_usd: float
    turns: int
    steps_done: int
    last_seq: int
    updated_at: float
    active_seconds: float
    steps: list[StepRecord] = []
    events: list[tuple[int, bytes]] = []
    status: RunStatus | msgspec.UnsetType = msgspec.UNSET
    state: bytes | None | msgspec.UnsetType = msgspec.UNSET  # JSON of the whole state
    gates: dict[str, Gate] | msgspec.UnsetType = msgspec.UNSET
    gate_deadline: float | None | msgspec.UnsetType = msgspec.UNSET
    response: str | None | msgspec.UnsetType = msgspec.UNSET
    error: str | None | msgspec.UnsetType = msgspec.UNSET
    finished_at: float | None | msgspec.UnsetType = msgspec.UNSET


class RunEnding(msgspec.Struct, kw_only=True):
    """A transition to a final status made from outside the run's driver (cancel, a gate's
    timeout, an internal error): compare-and-set on the status, fencing any driver off."""

    status: RunStatus
    message: str
    expect: frozenset[RunStatus]
    events: list[Any] = []  # engine.events.Event; numbered and stamped by the store
    deadline_passed: bool = False  # only if the run's gate deadline has passed (gate timeouts)
    live_gap: int = 0  # numbers to skip past events a running driver may have streamed


__all__ = ["Checkpoint", "FINAL", "Gate", "LIVE", "Run", "RunEnding", "RunStatus", "StepRecord", "StepStatus"]
