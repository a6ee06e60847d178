"""The shapes a caller sees: the run result (SPEC §3.7, the seed's run/resume responses) and
step_history entries, derived from step records."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Mapping, NamedTuple

import msgspec

from orch.run.model import FINAL, Gate, RunStatus, StepRecord


class HistoryEntry(msgspec.Struct, omit_defaults=True):
    step_id: str
    step_name: str
    type: str
    status: str
    turns: int
    cost_usd: float
    started_at: str
    ended_at: str
    duration_seconds: float
    output_key: str | None
    iteration: int
    error: str | None = None


class HumanInput(msgspec.Struct):
    step_id: str
    prompt: str
    fields: list[dict[str, Any]]
    agent_context: str


class RunResult(msgspec.Struct, omit_defaults=True):
    status: str
    run_id: str
    response: str | msgspec.UnsetType = msgspec.UNSET
    shared_state: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    step_history: list[HistoryEntry] | msgspec.UnsetType = msgspec.UNSET
    human_input_required: HumanInput | msgspec.UnsetType = msgspec.UNSET
    total_cost_usd: float | msgspec.UnsetType = msgspec.UNSET


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HistoryRow(NamedTuple):
    """What step_history needs of a step record, kept compact while a run is driven (a long run
    holds one per step)."""

    step_id: str
    step_name: str
    type: str
    status: str
    turns: int
    cost_usd: float
    started_at: float
    ended_at: float
    output_key: str | None
    iteration: int
    error: str | None


def history_rows(records: Iterable[StepRecord]) -> list[HistoryRow]:
    return [HistoryRow(r.step_id, r.step_name, r.type, r.status, r.turns, r.cost_usd, r.started_at, r.ended_at,
                       r.output_key, r.iteration, r.error)
            for r in records if r.type != "input"]


def history_entry(row: HistoryRow) -> HistoryEntry:
    return HistoryEntry(
        step_id=row.step_id, step_name=row.step_name, type=row.type, status=row.status, turns=row.turns,
        cost_usd=round(row.cost_usd, 8), started_at=iso(row.started_at), ended_at=iso(row.ended_at),
        duration_seconds=round(row.ended_at - row.started_at, 6), output_key=row.output_key,
        iteration=row.iteration, error=row.error,
    )


def build_result(run_id: str, status: str, cost_usd: float, response: str | None, history: Sequence[HistoryRow],
                 state: dict[str, Any], gates: Mapping[str, Gate]) -> RunResult:
    """The run/resume response for a run as it stands now."""
    result = RunResult(status=str(status), run_id=run_id, shared_state=state,
                       step_history=[history_entry(h) for h in history], total_cost_usd=round(cost_usd, 8))
    if status == RunStatus.PAUSED and gates:
        gate = min(gates.values(), key=lambda g: g.deadline)
        result.human_input_required = HumanInput(gate.step_id, gate.prompt, gate.fields, gate.agent_context)
    elif status in FINAL:
        result.response = response or ""
    return result


class ResultCache:
    """Results of runs that just stopped in this process, so that `wait()` needs no store read.
    Bounded by the steps the results hold (a long run's history weighs what its steps do), the
    oldest going first; `take` hands a result over and forgets it."""

    def __init__(self, max_steps: int = 20_000) -> None:
        self.max_steps = max_steps
        self._results: dict[str, RunResult] = {}
        self._steps = 0

    @staticmethod
    def _weight(result: RunResult) -> int:
        return 1 + (len(result.step_history) if isinstance(result.step_history, list) else 0)

    def put(self, run_id: str, result: RunResult) -> None:
        self.drop(run_id)
        self._results[run_id] = result
        self._steps += self._weight(result)
        while self._steps > self.max_steps and len(self._results) > 1:
            self.drop(next(iter(self._results)))

    def take(self, run_id: str) -> RunResult | None:
        result = self._results.pop(run_id, None)
        if result is not None:
            self._steps -= self._weight(result)
        return result

    def drop(self, run_id: str) -> None:
        self.take(run_id)

    def __len__(self) -> int:
        return len(self._results)
