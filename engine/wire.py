"""The HTTP API's bodies, shared by the server (orch.server) and the Python client (orch.client).

The run/resume responses are `orch.run.results.RunResult` as-is (the seed's completed, paused
and failed shapes, re-exported here); definitions and agents are the spec Structs of
`orch.definition.spec`; events are those of `orch.events`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from orch.errors import Problem
from orch.run.results import HistoryEntry, HumanInput, RunResult

__all__ = [
    "AgentSummary", "ErrorBody", "Health", "HistoryEntry", "HumanInput", "OrchestrationSummary", "ResumeRequest",
    "RunDetail", "RunPage", "RunRequest", "RunResult", "RunStatus", "RunSummary", "ValidationReport",
]

RunStatus = Literal["running", "paused", "completed", "failed", "cancelled"]


class RunRequest(msgspec.Struct, kw_only=True):
    """Body of `POST /orchestrations/{orch_id}/run` (and `/run/stream`)."""

    message: str = ""
    state: dict[str, Any] | None = None


class ResumeRequest(msgspec.Struct, kw_only=True):
    """Body of `POST /orchestrations/runs/{run_id}/resume`: field values, or one text answer."""

    response: dict[str, Any] | str


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error response. `code` is stable and machine-readable (the engine error's code, or
    the HTTP meaning: bad_request, unauthorized, not_found, ...); `fields` names each bad field
    of a rejected gate answer."""

    detail: str
    code: str
    fields: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


class OrchestrationSummary(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str
    steps: int


class AgentSummary(msgspec.Struct, kw_only=True):
    id: str
    name: str
    description: str
    type: str
    model: str | None
    tools: list[str] | str


class RunSummary(msgspec.Struct, kw_only=True):
    run_id: str
    orchestration_id: str
    status: str
    message: str
    total_cost_usd: float
    turns: int
    created_at: str
    updated_at: str
    finished_at: str | None
    parent_run_id: str | None


class RunPage(msgspec.Struct, kw_only=True):
    """One page of runs, newest first; pass `next_cursor` as `cursor` for the next page."""

    runs: list[RunSummary]
    next_cursor: str | None


class RunDetail(msgspec.Struct, kw_only=True):
    """Everything about one run as it stands now."""

    run_id: str
    orchestration_id: str
    version: str
    status: str
    message: str
    state: dict[str, Any]
    step_history: list[HistoryEntry]
    human_input_required: HumanInput | None
    response: str | None
    error: str | None
    total_cost_usd: float
    turns: int
    last_event_id: int
    created_at: str
    updated_at: str
    finished_at: str | None
    parent_run_id: str | None


class ValidationReport(msgspec.Struct, kw_only=True):
    """Every problem of a posted definition; `valid` when none is an error (warnings may remain)."""

    valid: bool
    problems: list[Problem]


class Health(msgspec.Struct, kw_only=True):
    status: Literal["ok", "unavailable"]
    graphs: int
    rejected: int
    db: str
    # How transform code runs here (docs/security.md): in a sandbox, as the server's user, or not at all.
    transforms: Literal["isolated", "unisolated", "refused"]
