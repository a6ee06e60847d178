"""The shapes a caller sees: the run result (SPEC §3.7, the seed's run/resume responses) and
step_history entries, derived from step records."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec


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


def history_entry(r: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        step_id=r["step_id"], step_name=r["step_name"], type=r["type"], status=r["status"], turns=r["turns"],
        cost_usd=round(r["cost_usd"], 8), started_at=iso(r["started_at"]), ended_at=iso(r["ended_at"]),
        duration_seconds=round(r["ended_at"] - r["started_at"], 6), output_key=r["output_key"],
        iteration=r["iteration"], error=r.get("error"),
    )


def build_result(run: dict[str, Any], records: list[dict[str, Any]], state: dict[str, Any],
                 gates: dict[str, dict[str, Any]]) -> RunResult:
    """The run/resume response for a run as it stands now."""
    status = run["status"]
    history = [history_entry(r) for r in records if r["type"] != "input"]
    result = RunResult(status=status, run_id=run["id"], shared_state=state, step_history=history,
                       total_cost_usd=round(run["cost_usd"], 8))
    if status == "paused" and gates:
        gate = min(gates.values(), key=lambda g: g["deadline"])
        result.human_input_required = HumanInput(gate["step_id"], gate["prompt"], gate["fields"], gate["agent_context"])
    elif status in ("completed", "failed", "cancelled"):
        result.response = run.get("response") or run.get("error") or ""
    return result
