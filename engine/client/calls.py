"""Every API call as data, with no I/O: what to send (`Call`) and how to read the answer
(`Call.parse`). `Client` and `AsyncClient` only move the bytes, so both speak the same API."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import msgspec

from orch.client.errors import error_for
from orch.definition.decode import decode_orchestration
from orch.definition.spec import Agent, Orchestration
from orch.errors import DefinitionError
from orch.wire import AgentSummary, Health, OrchestrationSummary, RunDetail, RunPage, RunResult, RunStatus, ValidationReport

T = TypeVar("T")
API = "/api/v1"
RETRIED_STATUSES = frozenset({502, 503, 504})  # a proxy or a restarting server: worth another try


def new_key() -> str:
    """An idempotency key: sent with every start and resume, so the client may send it again."""
    return uuid.uuid4().hex


def _id(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[bytes], T]
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send again after a transport failure (a read, or a write with an idempotency key).
    retry: bool = False
    ok: tuple[int, ...] = (200,)

    @property
    def content(self) -> bytes | None:
        return None if self.body is None else msgspec.json.encode(self.body)

    def parse(self, status: int, content: bytes, headers: Mapping[str, str] | None = None) -> T:
        if status not in self.ok:
            raise error_for(status, content, headers)
        return self.decode(content)


def _as(type_: Any) -> Callable[[bytes], Any]:
    decoder = msgspec.json.Decoder(type_)
    return decoder.decode


def _text(content: bytes) -> str:
    return content.decode("utf-8")


def _orchestration(content: bytes) -> Orchestration:
    # Read as the loader reads a file: a server may send Synapse's nulls for unset fields.
    orch, problems = decode_orchestration(msgspec.json.decode(content), "<server>")
    if orch is None or any(p.severity == "error" for p in problems):
        raise DefinitionError(problems)
    return orch


def health() -> Call[Health]:
    return Call("GET", f"{API}/health", _as(Health), retry=True, ok=(200, 503))


def list_orchestrations() -> Call[list[OrchestrationSummary]]:
    return Call("GET", f"{API}/orchestrations", _as(list[OrchestrationSummary]), retry=True)


def get_orchestration(orchestration_id: str) -> Call[Orchestration]:
    return Call("GET", f"{API}/orchestrations/{_id(orchestration_id)}", _orchestration, retry=True)


def graph(orchestration_id: str, format: Literal["mermaid", "dot"] = "mermaid") -> Call[str]:
    return Call("GET", f"{API}/orchestrations/{_id(orchestration_id)}/graph", _text, params={"format": format},
                retry=True)


def validate(definition: Mapping[str, Any]) -> Call[ValidationReport]:
    return Call("POST", f"{API}/orchestrations/validate", _as(ValidationReport), body=dict(definition), retry=True)


def list_agents() -> Call[list[AgentSummary]]:
    return Call("GET", f"{API}/agents", _as(list[AgentSummary]), retry=True)


def get_agent(agent_id: str) -> Call[Agent]:
    return Call("GET", f"{API}/agents/{_id(agent_id)}", _as(Agent), retry=True)


def _start_body(message: str, state: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"message": message, **({"state": dict(state)} if state is not None else {})}


def run(orchestration_id: str, message: str, state: Mapping[str, Any] | None, key: str) -> Call[RunResult]:
    return Call("POST", f"{API}/orchestrations/{_id(orchestration_id)}/run", _as(RunResult),
                body=_start_body(message, state), headers={"Idempotency-Key": key}, retry=True)


def run_stream(orchestration_id: str, message: str, state: Mapping[str, Any] | None, key: str) -> Call[None]:
    return Call("POST", f"{API}/orchestrations/{_id(orchestration_id)}/run/stream", _nothing,
                body=_start_body(message, state), headers={"Idempotency-Key": key}, retry=True)


def resume(run_id: str, response: Mapping[str, Any] | str, key: str) -> Call[RunResult]:
    return Call("POST", f"{API}/orchestrations/runs/{_id(run_id)}/resume", _as(RunResult),
                body={"response": response if isinstance(response, str) else dict(response)},
                headers={"Idempotency-Key": key}, retry=True)


def resume_stream(run_id: str, response: Mapping[str, Any] | str, key: str) -> Call[None]:
    return Call("POST", f"{API}/orchestrations/runs/{_id(run_id)}/resume/stream", _nothing,
                body={"response": response if isinstance(response, str) else dict(response)},
                headers={"Idempotency-Key": key}, retry=True)


def get_run(run_id: str) -> Call[RunDetail]:
    return Call("GET", f"{API}/orchestrations/runs/{_id(run_id)}", _as(RunDetail), retry=True)


def list_runs(orchestration_id: str | None = None, status: RunStatus | None = None, limit: int = 50,
              cursor: str | None = None) -> Call[RunPage]:
    params = {k: v for k, v in {"orchestration_id": orchestration_id, "status": status, "limit": limit,
                                 "cursor": cursor}.items() if v is not None}
    return Call("GET", f"{API}/orchestrations/runs", _as(RunPage), params=params, retry=True)


def cancel(run_id: str) -> Call[RunResult]:
    # Cancelling twice is no worse than once: the second gets 409 for a run already cancelled.
    return Call("POST", f"{API}/orchestrations/runs/{_id(run_id)}/cancel", _as(RunResult))


def events(run_id: str, after: int) -> Call[None]:
    return Call("GET", f"{API}/orchestrations/runs/{_id(run_id)}/events", _nothing,
                headers={"Last-Event-ID": str(after)} if after else {}, retry=True)


def _nothing(content: bytes) -> None:
    return None
