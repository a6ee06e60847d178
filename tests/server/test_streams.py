"""SSE: framing, the order of events, resuming with Last-Event-ID, keep-alives."""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import pytest

from orch.settings import Settings
from tests.server.conftest import AUTH, LiveServer
from tests.server.flows import FIRST_LEG, SECOND_LEG, slowed
from tests.server.sse_frames import in_order, parse, read


def test_run_stream_goes_to_the_gate_and_ends_with_done(api: httpx.Client) -> None:
    _, body = read(api, "POST", "/orchestrations/orch-research-report/run/stream", json={"message": "quantum computing"})
    assert body.types == FIRST_LEG
    assert body.ids == list(range(1, len(FIRST_LEG) + 1))
    run_id = body.events[0]["run_id"]
    assert all(e["run_id"] == run_id for e in body.events)
    starts = [(e["step_id"], e["step_name"], e["step_type"]) for e in body.events if e["type"] == "step_start"]
    assert starts == [("step-research", "Research", "agent"), ("step-write", "Write article", "agent"),
                      ("step-approve", "Editor approval", "human")]
    tool_call, tool_result = body.events[3], body.events[4]
    assert tool_call["step_id"] == "step-research" and tool_call["tool_name"] == "current_time"
    assert tool_result["tool_name"] == "current_time" and tool_result["preview"]
    gate = body.events[-2]
    assert gate["step_id"] == "step-approve" and [f["name"] for f in gate["fields"]] == ["decision", "notes"]
    assert gate["run_id"] == run_id and body.events[-1]["status"] == "paused"


def test_resume_stream_as_the_seed_curl_sends_it(api: httpx.Client) -> None:
    run_id = api.post("/orchestrations/orch-research-report/run", json={"message": "quantum computing"}).json()["run_id"]
    # The seed's curl line: -d with no Content-Type header.
    _, body = read(api, "POST", f"/orchestrations/runs/{run_id}/resume/stream",
                   content=b'{"response": {"decision": "approve"}}',
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    n = len(FIRST_LEG)
    assert body.types == SECOND_LEG and body.ids == list(range(n + 1, n + len(SECOND_LEG) + 1))
    complete = body.events[-2]
    assert complete["status"] == "completed" and complete["final_state"]["review"] == {"decision": "approve"}
    assert complete["response"].startswith("Published: quantum computing")


def test_agents_that_call_tools_stream_tool_events(api: httpx.Client) -> None:
    _, body = read(api, "POST", "/orchestrations/orch-calculator-tools/run/stream",
                   json={"message": "Offsite for 12 people", "state": {"budget": 100}})
    assert in_order(body.types, ["run_start", "step_start", "tool_execution", "tool_result", "step_complete",
                                 "orchestration_complete", "done"]), body.types
    execution = next(e for e in body.events if e["type"] == "tool_execution")
    result = next(e for e in body.events if e["type"] == "tool_result")
    assert execution["tool_name"] == result["tool_name"] and isinstance(execution["args"], dict)
    assert isinstance(result["preview"], str)


def test_events_replays_a_whole_run_across_its_pause(api: httpx.Client) -> None:
    run_id = api.post("/orchestrations/orch-research-report/run", json={"message": "x"}).json()["run_id"]
    api.post(f"/orchestrations/runs/{run_id}/resume", json={"response": {"decision": "approve"}})
    _, body = read(api, "GET", f"/orchestrations/runs/{run_id}/events")
    total = len(FIRST_LEG) + len(SECOND_LEG)
    assert body.types == FIRST_LEG + SECOND_LEG and body.ids == list(range(1, total + 1))
    _, tail = read(api, "GET", f"/orchestrations/runs/{run_id}/events", headers={"Last-Event-ID": str(total - 3)})
    assert tail.ids == [total - 2, total - 1, total]
    _, tail = read(api, "GET", f"/orchestrations/runs/{run_id}/events", params={"after": total - 1})
    assert tail.types == ["done"]


def test_events_of_a_paused_run_end_at_the_pause(api: httpx.Client) -> None:
    run_id = api.post("/orchestrations/orch-research-report/run", json={"message": "x"}).json()["run_id"]
    n = len(FIRST_LEG)
    _, body = read(api, "GET", f"/orchestrations/runs/{run_id}/events", headers={"Last-Event-ID": str(n - 3)})
    assert body.ids == [n - 2, n - 1, n] and body.types[-1] == "done"
    _, body = read(api, "GET", f"/orchestrations/runs/{run_id}/events", headers={"Last-Event-ID": str(n)})
    assert body.events == []


# -- live runs: agent steps slowed down so readers arrive while the run is going ----------------


@pytest.fixture
def slow_api(settings: Settings) -> Iterator[httpx.Client]:
    server = LiveServer(settings, executors=slowed(0.6), sse_ping_seconds=0.2).start()
    with httpx.Client(base_url=server.url + "/api/v1", headers=AUTH, timeout=30) as client:
        yield client
    server.stop()


def test_a_reader_that_drops_and_reconnects_misses_nothing_and_sees_nothing_twice(slow_api: httpx.Client) -> None:
    first: list[dict[str, Any]] = []
    with slow_api.stream("POST", "/orchestrations/orch-research-report/run/stream", json={"message": "x"}) as response:
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            first = parse(buffer[: buffer.rfind(b"\n\n") + 2]).events
            if len(first) >= 3:  # run_start, step_start, ... then hang up mid-step
                break
    last_id = first[-1]["seq"]
    run_id = first[0]["run_id"]
    _, rest = read(slow_api, "GET", f"/orchestrations/runs/{run_id}/events", headers={"Last-Event-ID": str(last_id)})
    assert rest.pings > 0  # the slow steps leave the stream idle
    combined = [e["seq"] for e in first] + rest.ids
    assert combined == list(range(1, len(FIRST_LEG) + 1))
    assert [e["type"] for e in first] + rest.types == FIRST_LEG


def test_readers_that_join_at_any_moment_see_the_same_events(slow_api: httpx.Client) -> None:
    with slow_api.stream("POST", "/orchestrations/orch-research-report/run/stream", json={"message": "y"}) as response:
        iterator = response.iter_bytes()
        head = next(iterator)
        run_id = parse(head[: head.rfind(b"\n\n") + 2]).events[0]["run_id"]
        readers = []
        for _ in range(3):
            _, body = read(slow_api, "GET", f"/orchestrations/runs/{run_id}/events")
            readers.append(body)
            time.sleep(0.1)
    for body in readers:
        assert body.ids == list(range(1, len(FIRST_LEG) + 1)) and body.types == FIRST_LEG


def test_an_idle_stream_gets_pings(slow_api: httpx.Client) -> None:
    _, body = read(slow_api, "POST", "/orchestrations/orch-research-report/run/stream", json={"message": "x"})
    assert body.pings >= 2 and body.types == FIRST_LEG


def test_client_disconnect_does_not_stop_a_synchronous_run(slow_api: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        slow_api.post("/orchestrations/orch-research-report/run", json={"message": "left early"}, timeout=0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = slow_api.get("/orchestrations/runs").json()["runs"]
        if runs and runs[0]["status"] != "running":
            break
        time.sleep(0.1)
    assert runs[0]["message"] == "left early" and runs[0]["status"] == "paused"


def test_every_graph_streams_to_its_end_and_replays_the_same(api: httpx.Client) -> None:
    for orch in api.get("/orchestrations").json():
        _, live = read(api, "POST", f"/orchestrations/{orch['id']}/run/stream", json={"message": "renewable energy"})
        assert live.types[0] == "run_start" and live.types[-1] == "done", (orch["id"], live.types)
        assert live.ids == list(range(1, len(live.ids) + 1))
        status = live.events[-1]["status"]
        expected_before_done = {"paused": "human_input_required", "completed": "orchestration_complete",
                                "failed": "orchestration_error"}[status]
        assert live.types[-2] == expected_before_done, (orch["id"], live.types[-3:])
        run_id = live.events[0]["run_id"]
        _, replay = read(api, "GET", f"/orchestrations/runs/{run_id}/events")
        assert replay.events == live.events
        assert api.get(f"/orchestrations/runs/{run_id}").json()["status"] == status
