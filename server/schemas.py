"""Request and response bodies of the HTTP API: defined in orch.wire, which the Python client
(orch.client) shares."""

from orch.wire import (
    AgentSummary, ErrorBody, Health, HistoryEntry, HumanInput, OrchestrationSummary, ResumeRequest, RunDetail, RunPage,
    RunRequest, RunResult, RunStatus, RunSummary, ValidationReport,
)

__all__ = [
    "AgentSummary", "ErrorBody", "Health", "HistoryEntry", "HumanInput", "OrchestrationSummary", "ResumeRequest",
    "RunDetail", "RunPage", "RunRequest", "RunResult", "RunStatus", "RunSummary", "ValidationReport",
]
