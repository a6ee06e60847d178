"""A run rebuilt from what the store holds: its state from the step records' deltas, and a
driver ready to go on from its last checkpoint (after a resume, a crash or a takeover)."""

from __future__ import annotations

from typing import Any

import msgspec

from orch.definition.compiled import CompiledGraph
from orch.errors import StateWriteError
from orch.run import scheduler
from orch.run.driver import RunDriver
from orch.run.host import RunHost
from orch.run.model import Run, StepRecord
from orch.run.results import history_rows


def replay_state(graph: CompiledGraph, records: list[StepRecord]) -> dict[str, Any]:
    """The run's state rebuilt from its step records' deltas, reducers applied in order."""
    state: dict[str, Any] = {}
    for r in records:
        writes = msgspec.json.decode(r.writes) if r.writes else {}
        if r.type == "input":
            state.update(writes)
            continue
        for key, value in writes.items():
            try:
                graph.schema.apply(state, key, value)
            except StateWriteError:  # checked when written; replay never refuses what was stored
                state[key] = value
    return state


def load_driver(host: RunHost, graph: CompiledGraph, run: Run, records: list[StepRecord], epoch: int) -> RunDriver:
    state = replay_state(graph, records)
    driver = RunDriver(host, graph, run, state=state, frontier=scheduler.decode(run.frontier, records),
                       step_count=len(records), epoch=epoch,
                       executed=sum(1 for r in records if r.status in ("completed", "failed")))
    driver.history = history_rows(records)
    value = driver.value
    # In-flight steps of a crashed process start again; count each execution once.
    value.turns = sum(1 for r in records if r.type != "input" and r.status != "skipped") + len(value.frontier.gates)
    outputs = [r for r in records if r.output_key and r.status == "completed"]
    if outputs:
        key = outputs[-1].output_key
        value.last_output = value.response = state.get(key or "")
    return driver
