"""The orchestrations as MCP tools, driven by the official MCP client: over streamable HTTP at
/mcp (behind the API keys) and over stdio (`orch mcp`)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.server.conftest import API_KEY, ROOT, LiveServer

FIXED = ["list_orchestrations", "list_runs", "get_run", "resume", "cancel_run"]


@asynccontextmanager
async def http_client(live: LiveServer) -> AsyncIterator[Client]:
    # Entered and left inside the test: the SDK's task groups must be left by the task that entered them.
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    async with http, Client(streamable_http_client(live.url + "/mcp", http_client=http)) as client:
        yield client


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content  # type: ignore[no-any-return]


async def run_to_gate_and_resume(client: Client) -> None:
    listed = {t.name: t for t in (await client.list_tools()).tools}
    assert [n for n in listed if n in FIXED] == FIXED
    research = listed["orch-research-report"]
    assert research.title == "Research → Report"
    assert research.input_schema["properties"]["state"]["properties"]["query"] == {
        "type": "string", "description": "The topic to research; a run's message is written here."}

    paused = structured(await client.call_tool("orch-research-report", {"message": "MCP tools"}))
    assert paused["status"] == "paused"
    gate = paused["human_input_required"]
    assert gate["step_id"] == "step-approve"
    assert [f["name"] for f in gate["fields"]] == ["decision", "notes"]

    detail = structured(await client.call_tool("get_run", {"run_id": paused["run_id"]}))
    assert detail["status"] == "paused" and detail["human_input_required"] == gate

    wrong = await client.call_tool("resume", {"run_id": paused["run_id"], "response": {"decision": "maybe"}})
    assert wrong.is_error
    assert wrong.content[0].text.startswith("decision: ")

    final = structured(await client.call_tool("resume", {"run_id": paused["run_id"],
                                                         "response": {"decision": "approve", "notes": "ship it"}}))
    assert final["status"] == "completed"
    assert final["shared_state"]["published"].startswith("Published: MCP tools")

    again = await client.call_tool("resume", {"run_id": paused["run_id"], "response": {"decision": "approve"}})
    assert again.is_error
    assert again.content[0].text == f"run '{paused['run_id']}' is completed, not paused"

    runs = structured(await client.call_tool("list_runs", {"orchestration_id": "orch-research-report", "limit": 5}))
    assert paused["run_id"] in [r["run_id"] for r in runs["runs"]]
    names = [o["tool"] for o in structured(await client.call_tool("list_orchestrations", {}))["orchestrations"]]
    assert "orch-research-report" in names and set(names) <= set(listed)


async def test_the_official_client_runs_an_orchestration_to_its_gate_and_resumes_it_over_http(
        live: LiveServer) -> None:
    async with http_client(live) as client:
        await run_to_gate_and_resume(client)


async def test_unknown_runs_are_tool_errors(live: LiveServer) -> None:
    async with http_client(live) as client:
        missing = await client.call_tool("get_run", {"run_id": "run_nope"})
    assert missing.is_error and missing.content[0].text == "run 'run_nope' not found"


def test_mcp_over_http_needs_an_api_key(live: LiveServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    r = httpx.post(live.url + "/mcp", json=body, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    assert r.json()["detail"] == "missing API key: send the header 'Authorization: Bearer <key>'"


async def test_the_official_client_runs_an_orchestration_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orch.server.cli", "mcp", "--graphs", str(ROOT / "graphs"), "--db", f"sqlite:///{tmp_path}/o.db"],
        env={"ORCH_SANDBOX_ROOT": str(tmp_path / "sandbox"), "ORCH_TRANSFORM_ISOLATION": "unisolated"},
        cwd=str(tmp_path),
    )
    async with Client(params, read_timeout_seconds=60) as client:
        await run_to_gate_and_resume(client)


async def test_each_finished_step_is_reported_as_progress(live: LiveServer) -> None:
    seen: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message))

    async with http_client(live) as client:
        result = await client.call_tool("orch-research-report", {"message": "progress"}, progress_callback=progress)
    assert structured(result)["status"] == "paused"
    assert seen == [(1.0, "step-research completed"), (2.0, "step-write completed")]


def test_in_local_mode_mcp_answers_only_loopback_hosts(settings: Any) -> None:
    server = LiveServer(settings, api_keys=[], allow_unauthenticated=True).start()
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        rebound = httpx.post(server.url + "/mcp", json=body, headers={**headers, "Host": "attacker.example"})
        assert rebound.status_code == 421
        assert httpx.post(server.url + "/mcp", json=body, headers=headers).status_code == 200
    finally:
        server.stop()


def test_tool_names_from_orchestration_ids() -> None:
    from types import SimpleNamespace

    import orch
    from orch.definition.loader import load_text
    from orch.server.mcp import OrchestrationTools

    catalog = load_text("""
orchestrations:
  - {id: resume, name: R, steps: [{id: a, type: print, print_content: x}]}
  - {id: "orch a", name: A, steps: [{id: a, type: print, print_content: x}]}
  - {id: "orch/a", name: B, steps: [{id: a, type: print, print_content: x}]}
""", "ids.yaml")
    graphs = {oid: r.graph for oid, r in orch.compile(catalog).items()}
    tools = OrchestrationTools(SimpleNamespace(graphs=graphs))  # type: ignore[arg-type]
    assert {name: g.id for name, g in tools.graphs_by_tool().items()} == {
        "orch_a": "orch a", "orch_a_2": "orch/a", "run_resume": "resume"}
    assert [t.name for t in tools.list()][5:] == ["orch_a", "orch_a_2", "run_resume"]
