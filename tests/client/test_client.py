"""orch.client against a real server: the seed's whole flow with `Client` and `AsyncClient`,
errors as exceptions, and a stream that survives its server being killed and started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from orch.client import AsyncClient, Client, Conflict, NotFound, Unauthorized, Unprocessable
from orch.client.streams import SSEParser
from orch.events import Done, HumanInputRequired, OrchestrationComplete, RunStart
from orch.wire import RunDetail
from tests.server.conftest import API_KEY, ROOT, LiveServer
from tests.server.flows import FIRST_LEG, SECOND_LEG

RESEARCH = "orch-research-report"
APPROVE = {"decision": "approve", "notes": "Publish it."}


def types(events: list[Any]) -> list[str]:
    return [e.__struct_config__.tag for e in events]


def test_the_seed_flow_run_stream_resume_and_resume_stream(live: LiveServer) -> None:
    with Client(live.url, API_KEY) as api:
        assert RESEARCH in [o.id for o in api.list_orchestrations()]
        assert api.get_orchestration(RESEARCH).entry == "step-research"

        paused = api.run(RESEARCH, "Synapse AI platform")
        assert paused.status == "paused"
        assert paused.human_input_required.step_id == "step-approve"  # type: ignore[union-attr]
        final = api.resume(paused.run_id, APPROVE)
        assert final.status == "completed"
        assert final.shared_state["published"].startswith("Published: Synapse AI platform")  # type: ignore[index]

        stream = api.run_stream(RESEARCH, "quantum computing")
        events = list(stream)
        assert types(events) == FIRST_LEG
        assert isinstance(events[0], RunStart) and stream.run_id == events[0].run_id
        gate = next(e for e in events if isinstance(e, HumanInputRequired))
        assert gate.fields[0]["name"] == "decision"
        detail = api.get_run(stream.run_id)
        assert isinstance(detail, RunDetail) and detail.status == "paused"
        assert detail.last_event_id == stream.last_event_id == events[-1].seq

        resumed = list(api.resume_stream(stream.run_id, {"decision": "approve"}))
        assert types(resumed) == SECOND_LEG
        assert [e.seq for e in events + resumed] == list(range(1, len(events) + len(resumed) + 1))
        complete = next(e for e in resumed if isinstance(e, OrchestrationComplete))
        assert complete.status == "completed"
        # The whole run again, from its stored events; and from the middle.
        assert types(list(api.events(stream.run_id))) == FIRST_LEG + SECOND_LEG
        assert [e.seq for e in api.events(stream.run_id, after=10)] == list(range(11, len(events + resumed) + 1))
        assert stream.run_id in [r.run_id for r in api.iter_runs(RESEARCH, "completed", page_size=1)]


async def test_the_seed_flow_with_the_async_client(live: LiveServer) -> None:
    async with AsyncClient(live.url, API_KEY) as api:
        stream = api.run_stream(RESEARCH, "asyncio")
        events = [e async for e in stream]
        assert types(events) == FIRST_LEG
        resumed = [e async for e in await api.resume_stream(stream.run_id or "", "approve")]
        assert types(resumed) == SECOND_LEG
        page = await api.list_runs(RESEARCH, limit=1)
        assert len(page.runs) == 1 and page.next_cursor is not None
        assert (await api.get_run(stream.run_id or "")).status == "completed"
        assert (await api.health()).status == "ok"


def test_errors_are_one_exception_per_status(live: LiveServer) -> None:
    with Client(live.url, API_KEY) as api:
        with pytest.raises(NotFound) as missing:
            api.run("orch-nope", "x")
        assert missing.value.detail == "orchestration 'orch-nope' not found"
        assert missing.value.code == "not_found"
        paused = api.run(RESEARCH, "errors")
        with pytest.raises(Unprocessable) as invalid:
            api.resume(paused.run_id, {"decision": "maybe"})
        assert list(invalid.value.fields) == ["decision"]
        api.cancel(paused.run_id)
        with pytest.raises(Conflict):
            api.resume(paused.run_id, APPROVE)
        with pytest.raises(NotFound):
            list(api.events("run_missing"))
    with Client(live.url, "wrong-key") as api, pytest.raises(Unauthorized) as denied:
        api.list_orchestrations()
    assert denied.value.detail == "invalid API key"


def test_a_repeated_idempotency_key_gets_the_same_run(live: LiveServer) -> None:
    with Client(live.url, API_KEY) as api:
        first = api.run(RESEARCH, "once", idempotency_key="client-key-1")
        again = api.run(RESEARCH, "once", idempotency_key="client-key-1")
        assert again.run_id == first.run_id


def test_the_client_does_not_import_the_server() -> None:
    code = "import sys, orch.client; print(sorted(m for m in sys.modules if m.startswith('orch.server')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("chunks", [
    [b'id: 1\ndata: {"a":1}\n\n'],
    [b"id: 1\r\nda", b'ta: {"a":1}\r', b"\n\r\n: ping\n\n"],  # CRLF lines, cut anywhere, and a ping
])
def test_the_sse_parser_reads_events_across_chunks(chunks: list[bytes]) -> None:
    parser = SSEParser()
    assert [(m.id, m.data) for chunk in chunks for m in parser.feed(chunk)] == [("1", '{"a":1}')]


# -- a stream across a server restart ------------------------------------------------------------

SLOW_GRAPH = """
id: orch-slow
name: Slow steps
state_schema:
  topic: {type: str, default: ""}
steps:
""" + "".join(f"""
  - id: s{i}
    type: tool
    forced_tool: pause
    tool_args: {{seconds: 0.3}}
    output_key: o{i}
    next_step_id: {f's{i + 1}' if i < 12 else 'null'}
""" for i in range(1, 13))


class ServerProcess:
    """`orch serve` in a process of its own, on a fixed port and database."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "graphs").mkdir()
        (tmp / "graphs" / "slow.yaml").write_text(SLOW_GRAPH)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "orch.server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--graphs", str(tmp / "graphs"), "--db", f"sqlite:///{tmp}/orch.db", "--api-key", API_KEY]
        self.env = {**os.environ, "ORCH_TOOL_MODULES": "tests.fakes.slow_tools", "ORCH_LEASE_SECONDS": "1.5",
                    "ORCH_SANDBOX_ROOT": str(tmp / "sandbox")}
        self.log = open(tmp / "server.log", "ab")

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path).start()
    yield process
    if process.proc.poll() is None:
        process.proc.terminate()
        process.proc.wait(20)
    process.log.close()


def test_a_stream_survives_its_server_being_killed_and_started_again(server: ServerProcess) -> None:
    with Client(server.url, API_KEY, reconnect_timeout=60) as api:
        stream = api.run_stream("orch-slow", "restart me")
        received = []
        for event in stream:
            received.append(event)
            if len(received) == 6:  # s1 done, s2 done, s3 started
                server.kill()
                server.start()
        seqs = [e.seq for e in received]
        assert seqs == sorted(set(seqs)), "an event came twice or out of order"
        assert any(b - a > 1 for a, b in zip(seqs, seqs[1:])), "the recovered run numbers on past what was streamed"
        assert isinstance(received[-1], Done) and received[-1].status == "completed"
        stored = list(api.events(stream.run_id or ""))
        # Every stored event reached the reader, once; what it saw beyond them was streamed live
        # before the crash and never stored (numbering then skips, never repeats).
        assert {e.seq for e in stored} <= set(seqs)
        lost = [e for e in received if e.seq not in {s.seq for s in stored}]
        assert all(e.seq < min(s.seq for s in stored if s.seq > 6) for e in lost)
        completed = [e.step_id for e in stored if e.__struct_config__.tag == "step_complete"]
        assert completed == [f"s{i}" for i in range(1, 13)]
        assert api.get_run(stream.run_id or "").state["o12"] == "paused 0.3s"


def test_the_other_endpoints(live: LiveServer) -> None:
    with Client(live.url, API_KEY) as api:
        assert api.health().status == "ok"
        assert api.graph(RESEARCH).startswith("flowchart")
        assert "digraph" in api.graph(RESEARCH, "dot")
        agents = api.list_agents()
        assert agents and api.get_agent(agents[0].id).id == agents[0].id
        report = api.validate({"id": "x", "name": "X", "steps": [{"id": "a", "type": "print"}]})
        assert not report.valid
        assert [p.message for p in report.problems] == ["print step needs 'print_content'"]
        with pytest.raises(NotFound) as missing:
            api.get_agent("agent-nope")
        assert missing.value.detail == "agent 'agent-nope' not found"
