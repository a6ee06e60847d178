"""MCP servers' tools in runs: a Synapse-format bundle declares a server (tests/fakes/mcp_server.py,
written with the official SDK), and its agent step and tool step call the server's tools over
stdio, streamable HTTP and SSE."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

import orch
from orch.events import ToolExecution, decode_event
from orch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "tests" / "engine" / "mcp" / "weather.bundle.json"
FAKE = str(ROOT / "tests" / "fakes" / "mcp_server.py")
FORECAST = {"city": "Oslo", "celsius": 14, "sky": "clear"}


def bundle(tmp_path: Path, server: dict[str, Any], **step_changes: Any) -> Path:
    """The fixture bundle with its `weather` server declared as `server`."""
    doc = json.loads(BUNDLE.read_text())
    doc["mcp_servers"] = [{"name": "weather", "label": "Weather", **server}]
    for step in doc["orchestrations"][0]["steps"]:
        step.update(step_changes.get(step["id"], {}))
    path = tmp_path / "graphs" / "weather.bundle.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def stdio_server() -> dict[str, Any]:
    return {"server_type": "stdio", "command": sys.executable, "args": [FAKE]}


def settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = dict(database_url=f"sqlite:///{tmp_path}/orch.db", sandbox_root=str(tmp_path / "sandbox"),
                                  mcp_allow_stdio=True, mcp_stdio_commands=[sys.executable])
    values.update(changes)
    return Settings(**values)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[orch.Engine]:
    eng, report = await orch.open_engine(settings(tmp_path), graphs=[bundle(tmp_path, stdio_server())])
    assert "orch-weather-brief" in report.graphs, report.problems
    yield eng
    await eng.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeServer:
    """tests/fakes/mcp_server.py over HTTP, in a process of its own."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args

    def start(self) -> "FakeServer":
        self.proc = subprocess.Popen([sys.executable, FAKE, *self.args, str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the fake MCP server did not start")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def http_server() -> Iterator[FakeServer]:
    server = FakeServer("--token", "s3cret", "--http").start()
    yield server
    server.kill()


async def stored_events(eng: orch.Engine, run_id: str) -> list[Any]:
    return [decode_event(body) for _, body in await eng.store.events(run_id)]


async def test_a_tool_step_and_an_agent_step_call_a_stdio_servers_tools(engine: orch.Engine) -> None:
    result = await engine.run("orch-weather-brief", "Oslo")
    assert result.status == "completed", result.response
    assert result.shared_state["forecast"] == FORECAST
    report = result.shared_state["report"]
    assert report.endswith('## Tool results\n\n- weather__forecast: {"city":"Oslo","celsius":14,"sky":"clear"}\n'
                           '- weather__add: 5')
    calls = [(e.step_id, e.tool_name) for e in await stored_events(engine, result.run_id)
             if isinstance(e, ToolExecution)]
    assert calls == [("step-fetch", "weather__forecast"), ("step-report", "weather__forecast"),
                     ("step-report", "weather__add")]
    # One connection, shared by both steps and by the next run.
    await engine.run("orch-weather-brief", "Bergen")
    assert engine.services.mcp.connection("weather").opened == 1


async def test_the_server_sees_the_attempt_and_none_of_our_environment(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_API_KEYS", "do-not-leak")
    path = bundle(tmp_path, {**stdio_server(), "env": {"WEATHER_UNITS": "metric"}},
                  **{"step-fetch": {"forced_tool": "weather__environment", "tool_args": {}, "output_key": "env"},
                     "step-report": {"forced_tool": "weather__attempt", "type": "tool", "tool_args": {},
                                     "output_key": "attempt", "agent_id": None}})
    eng, _ = await orch.open_engine(settings(tmp_path, child_env_passthrough=["LANG"]), graphs=[path])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "completed", result.response
        env = result.shared_state["env"]
        assert "ORCH_API_KEYS" not in env and "WEATHER_UNITS" in env
        assert set(env) <= {"PATH", "LANG", "WEATHER_UNITS", "HOME", "LOGNAME", "SHELL", "TERM", "USER"}
        assert result.shared_state["attempt"] == f"{result.run_id}/step-report#1"
    finally:
        await eng.close()


async def test_a_stdio_server_killed_during_a_call_fails_the_step_and_the_next_run_reconnects(
        tmp_path: Path) -> None:
    path = bundle(tmp_path, stdio_server(),
                  **{"step-fetch": {"forced_tool": "weather__wait", "tool_args": {"seconds": 30}}})
    eng, _ = await orch.open_engine(settings(tmp_path), graphs=[path])
    try:
        mcp = eng.services.mcp
        pid = int(await mcp.call("weather__pid", {}))
        run_id = await eng.start("orch-weather-brief", "Oslo")
        await asyncio.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        result = await asyncio.wait_for(eng.wait(run_id), 20)
        assert result.status == "failed"
        assert result.response == ("step step-fetch: MCP server 'weather' closed the connection during the call of "
                                   "'wait'; its stderr ends: weather MCP server on stdio")
        # The engine goes on, and the next call starts the server again.
        assert await mcp.call("weather__add", {"a": 1, "b": 1}) == "2"
        assert int(await mcp.call("weather__pid", {})) != pid
        assert mcp.connection("weather").opened == 2
    finally:
        await eng.close()


async def test_closing_the_engine_stops_the_stdio_server(engine: orch.Engine) -> None:
    pid = int(await engine.services.mcp.call("weather__pid", {}))
    await engine.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the MCP server (pid {pid}) outlived the engine")


@pytest.mark.parametrize("changes, message", [
    ({"mcp_allow_stdio": False},
     "MCP server 'weather' starts the local command '{python}', and this server does not start MCP commands; "
     "the operator allows them with ORCH_MCP_ALLOW_STDIO=true and lists them in ORCH_MCP_STDIO_COMMANDS"),
    ({"mcp_stdio_commands": ["npx"]},
     "MCP server 'weather' starts the command '{python}', which is not in ORCH_MCP_STDIO_COMMANDS (listed: npx)"),
])
async def test_stdio_servers_start_only_when_the_operator_allows_them(tmp_path: Path, changes: dict[str, Any],
                                                                     message: str) -> None:
    eng, _ = await orch.open_engine(settings(tmp_path, **changes), graphs=[bundle(tmp_path, stdio_server())])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "failed"
        assert result.response == "step step-fetch: " + message.format(python=sys.executable)
    finally:
        await eng.close()


async def test_a_remote_server_over_streamable_http_with_a_token(tmp_path: Path, http_server: FakeServer) -> None:
    url = f"http://127.0.0.1:{http_server.port}/mcp"
    path = bundle(tmp_path, {"server_type": "remote", "url": url, "token": "s3cret"})
    eng, _ = await orch.open_engine(settings(tmp_path, mcp_allow_stdio=False), graphs=[path])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "completed", result.response
        assert result.shared_state["forecast"] == FORECAST
        assert result.shared_state["report"].endswith("- weather__add: 5")
        # Killed, the server fails the steps that need it, with a clear error; the engine goes on.
        http_server.kill()
        failed = await eng.run("orch-weather-brief", "Oslo")
        assert failed.status == "failed"
        assert failed.response == (f"step step-fetch: MCP server 'weather' ({url}) cannot be reached: "
                                   "All connection attempts failed")
        http_server.start()
        again = await eng.run("orch-weather-brief", "Oslo")
        assert again.status == "completed", again.response
    finally:
        await eng.close()


async def test_a_wrong_token_is_a_clear_error(tmp_path: Path, http_server: FakeServer) -> None:
    url = f"http://127.0.0.1:{http_server.port}/mcp"
    path = bundle(tmp_path, {"server_type": "remote", "url": url, "token": "wrong"})
    eng, _ = await orch.open_engine(settings(tmp_path), graphs=[path])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "failed"
        assert result.response.startswith(f"step step-fetch: MCP server 'weather' ({url}) cannot be reached: ")
        assert "401" in result.response
    finally:
        await eng.close()


async def test_a_server_of_the_older_sse_transport_is_reached_by_falling_back(tmp_path: Path) -> None:
    server = FakeServer("--sse").start()
    try:
        path = bundle(tmp_path, {"server_type": "remote", "url": f"http://127.0.0.1:{server.port}/sse"})
        eng, _ = await orch.open_engine(settings(tmp_path), graphs=[path])
        try:
            result = await eng.run("orch-weather-brief", "Oslo")
            assert result.status == "completed", result.response
            assert result.shared_state["forecast"] == FORECAST
        finally:
            await eng.close()
    finally:
        server.kill()


async def test_a_call_that_outlasts_its_timeout_fails_the_step(tmp_path: Path) -> None:
    path = bundle(tmp_path, {**stdio_server(), "timeout_seconds": 0.5},
                  **{"step-fetch": {"forced_tool": "weather__wait", "tool_args": {"seconds": 5}}})
    eng, _ = await orch.open_engine(settings(tmp_path), graphs=[path])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.status == "failed"
        assert result.response == "step step-fetch: MCP server 'weather' did not answer the call of 'wait' in time"
    finally:
        await eng.close()


async def test_tool_errors_and_bad_arguments_fail_the_tool_step(tmp_path: Path) -> None:
    path = bundle(tmp_path, stdio_server(),
                  **{"step-fetch": {"forced_tool": "weather__add", "tool_args": {"a": "two", "b": 3}}})
    eng, _ = await orch.open_engine(settings(tmp_path), graphs=[path])
    try:
        result = await eng.run("orch-weather-brief", "Oslo")
        assert result.response == ("step step-fetch: invalid arguments for tool 'weather__add': "
                                   "'two' is not of type 'integer' - at $.a")
        assert await eng.services.mcp.specs(["weather__nope", "weather__add"]) == \
            [s for s in await eng.services.mcp.specs(None) if s.name == "weather__add"]
    finally:
        await eng.close()
