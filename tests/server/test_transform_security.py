"""Transforms against a running server: a real `orch serve` process with secrets in its environment
and API keys, attacked by the graphs it serves; and the modes a server runs transforms in."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import msgspec
import pytest

from orch.settings import Settings
from tests.conftest import ROOT, require_isolation
from tests.engine.test_sandbox import transform_processes
from tests.server.conftest import AUTH, LiveServer

SECRET = "sk-live-0123456789abcdef"
KEY = "orch_server_key_for_tests"
NO_BWRAP = "/nonexistent/bwrap"


def transform_graph(oid: str, code: str) -> str:
    """An orchestration of one transform step; the run's message is JSON the code reads as `given`."""
    code = "import json, os\ngiven = json.loads(state['user_input'] or 'null')\n" + code
    return json.dumps({"id": oid, "name": oid, "steps": [
        {"id": "t", "type": "transform", "transform_code": code, "output_key": "out"}]})


PEEK = """
import socket
def attempt(action, *args):
    try:
        return action(*args)
    except Exception as exc:
        return type(exc).__name__
def read(path):
    with open(path, 'rb') as f:
        return f.read().decode('latin1')
def connect(port):
    socket.create_connection(('127.0.0.1', port), timeout=5).close()
    return 'connected'
result = {'server': attempt(read, f"/proc/{given['pid']}/environ"), 'parent': attempt(read, '/proc/1/environ'),
          'own': dict(os.environ), 'api': attempt(connect, given['port']), 'postgres': attempt(connect, 5432)}
"""
BOMB = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
FORKS = "import time\nfor i in range(200):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)"
SETSID = ("import time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(30)\n"
          "    os._exit(0)\ntime.sleep(0.2)\nresult = 'left a grandchild'")
HELLO = json.dumps({"id": "hello", "name": "Hello", "steps": [
    {"id": "p", "type": "print", "print_content": "hello {state.user_input}", "output_key": "greeting"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`orch serve` in a process of its own, as an operator starts it."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "serve.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orch.server.cli", "serve", "--port", str(self.port), *args],
                cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(ROOT), "ORCH_DATABASE_URL": f"sqlite:///{workdir}/orch.db",
                     "ORCH_GRAPHS_DIR": str(workdir / "graphs"), **env})

    def ready(self) -> "ServeProcess":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"orch serve exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"orch serve did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def run(self, oid: str, given: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/api/v1/orchestrations/{oid}/run", json={"message": json.dumps(given)},
                              headers=headers if headers is not None else {"Authorization": f"Bearer {KEY}"},
                              timeout=60)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def graphs_dir(workdir: Path, graphs: dict[str, str]) -> None:
    (workdir / "graphs").mkdir()
    for name, text in graphs.items():
        (workdir / "graphs" / f"{name}.yaml").write_text(text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One isolated server with API keys and a provider key in its environment, serving hostile graphs."""
    require_isolation()
    workdir = tmp_path_factory.mktemp("hostile")
    graphs_dir(workdir, {"peek": transform_graph("peek", PEEK), "bomb": transform_graph("bomb", BOMB),
                         "forks": transform_graph("forks", FORKS), "setsid": transform_graph("setsid", SETSID),
                         "hello": HELLO})
    served = ServeProcess(workdir, env={"ORCH_API_KEYS": KEY, "OPENAI_API_KEY": SECRET,
                                        "ORCH_TRANSFORM_TIMEOUT_SECONDS": "3"})
    try:
        yield served.ready()
    finally:
        served.stop()


@pytest.fixture
def serving(server: ServeProcess) -> Iterator[ServeProcess]:
    """The server; after the test, it still serves and no transform process is left."""
    yield server
    assert transform_processes(server.proc.pid) == []
    assert server.run("hello", "again")["response"] == 'hello "again"'


def test_the_banner_and_health_state_that_transforms_run_isolated(serving: ServeProcess) -> None:
    banner = serving.log.read_text()
    assert "Transforms run isolated (bubblewrap " in banner
    assert ("): own user, PID, mount and network namespaces, no network, at most 16 processes, 512 MB each"
            in banner)
    assert httpx.get(serving.url + "/health").json()["transforms"] == "isolated"


def test_a_transform_cannot_read_the_server_secrets_or_reach_its_port(serving: ServeProcess) -> None:
    # The secret is there to steal: the server's environment holds it.
    assert SECRET in Path(f"/proc/{serving.proc.pid}/environ").read_bytes().decode()
    run = serving.run("peek", {"pid": serving.proc.pid, "port": serving.port})
    assert run["status"] == "completed"
    out = run["shared_state"]["out"]
    assert {k: out[k] for k in ("server", "api", "postgres")} == {
        "server": "FileNotFoundError", "api": "ConnectionRefusedError", "postgres": "ConnectionRefusedError"}
    assert out["parent"] in ("PermissionError", "PATH=/usr/local/bin:/usr/bin:/bin\0LANG=C.UTF-8\0")
    assert out["own"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PWD": "/scratch"}
    assert SECRET not in json.dumps(run) and KEY not in json.dumps(run)


def test_a_fork_bomb_is_capped_and_the_server_keeps_serving(serving: ServeProcess) -> None:
    outcome: dict[str, Any] = {}
    bombing = threading.Thread(target=lambda: outcome.update(serving.run("bomb")))
    bombing.start()
    slowest, most = 0.0, 0
    while bombing.is_alive():
        started = time.monotonic()
        assert httpx.get(serving.url + "/health", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        most = max(most, len(transform_processes(serving.proc.pid)))
        time.sleep(0.05)
    bombing.join()
    assert (outcome["status"], outcome["response"]) == ("failed", "step t: transform exceeded its time limit of 3s")
    # 16 transform processes at most, and bubblewrap's two (the one the server started, PID 1 inside)
    assert 10 <= most <= 18
    assert slowest < 2.0


def test_200_forks_fail_at_the_cap_and_leave_nothing(serving: ServeProcess) -> None:
    run = serving.run("forks")
    assert (run["status"], run["response"]) == (
        "failed", "step t: transform raised BlockingIOError: [Errno 11] Resource temporarily unavailable (line 5)")


def test_a_double_fork_into_a_new_session_leaves_nothing(serving: ServeProcess) -> None:
    run = serving.run("setsid")
    assert (run["status"], run["shared_state"]["out"]) == ("completed", "left a grandchild")
    assert transform_processes(serving.proc.pid) == []
    time.sleep(1)
    assert transform_processes(serving.proc.pid) == []


# -- modes -------------------------------------------------------------------------------------

REFUSAL = ("transform steps cannot run on this server: it cannot isolate them (bubblewrap is not installed: "
           f"no `{NO_BWRAP}` command) and it accepts API keys")
HINT = ("install bubblewrap (Debian package `bubblewrap`), or set ORCH_TRANSFORM_ISOLATION=unisolated to run them "
        "without isolation")
PARENT = """
id: parent
name: Parent
agents:
  - {id: runs-child, name: Runs child, type: orchestrator, orchestration_id: child}
steps:
  - {id: delegate, type: agent, agent_id: runs-child, output_key: answer}
"""


def test_a_server_with_keys_and_no_isolation_refuses_transform_graphs(settings: Settings, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orch.server")
    graphs_dir(tmp_path, {"child": transform_graph("child", "result = 1"), "parent": PARENT, "hello": HELLO})
    refusing = msgspec.structs.replace(settings, graphs_dir=str(tmp_path / "graphs"), transform_isolation="auto",
                                       transform_bwrap=NO_BWRAP, allow_http_transforms=True)
    server = LiveServer(refusing).start()
    try:
        with httpx.Client(base_url=server.url + "/api/v1", headers=AUTH) as api:
            assert [o["id"] for o in api.get("/orchestrations").json()] == ["hello"]
            assert api.get("/health").json() == {"status": "ok", "graphs": 1, "rejected": 2, "db": "ok",
                                                 "transforms": "refused"}
            started = api.post("/orchestrations/child/run", json={"message": "x"})
            assert (started.status_code, started.json()["detail"]) == (404, "orchestration 'child' not found")
            posted = json.loads(transform_graph("posted", "result = 1"))
            assert api.post("/orchestrations/validate", json=posted).json()["problems"] == [
                {"code": "transform-not-isolated", "message": REFUSAL, "step_id": "t", "path": "$.steps[0].type",
                 "hint": HINT, "orchestration_id": "posted"}]
    finally:
        server.stop()
    logged = {r.getMessage() for r in caplog.records if r.name == "orch.server"}
    child, parent = tmp_path / "graphs" / "child.yaml", tmp_path / "graphs" / "parent.yaml"
    assert (f"orchestration child left out, its transforms cannot run on this server:\n"
            f"  {child}: step t: {REFUSAL} [transform-not-isolated]; {HINT}") in logged
    assert (f"orchestration parent left out, its transforms cannot run on this server:\n"
            f"  {parent}: step delegate: step delegate runs orchestration 'child', which has transform steps; "
            f"{REFUSAL} [transform-not-isolated]; {HINT}") in logged
    assert (f"transforms are refused: this server cannot isolate them (bubblewrap is not installed: no `{NO_BWRAP}` "
            f"command) and it accepts API keys, so orchestrations with transform steps are left out; {HINT}") in logged


def test_local_mode_runs_transforms_unisolated_and_says_so(tmp_path: Path) -> None:
    graphs_dir(tmp_path, {"child": transform_graph("child", "result = given * 2")})
    served = ServeProcess(tmp_path, "--local", env={"ORCH_TRANSFORM_BWRAP": NO_BWRAP})
    try:
        served.ready()
        assert served.run("child", 21, headers={})["shared_state"]["out"] == 42
        assert httpx.get(served.url + "/health").json()["transforms"] == "unisolated"
    finally:
        served.stop()
    banner = served.log.read_text().splitlines()
    assert (f"Transforms run unisolated (bubblewrap is not installed: no `{NO_BWRAP}` command); local mode: graph code "
            "runs as your user, with your files and your network") in banner


def test_unisolated_set_by_the_operator_runs_transforms_with_keys(settings: Settings, tmp_path: Path) -> None:
    graphs_dir(tmp_path, {"child": transform_graph("child", "result = given * 2")})
    chosen = msgspec.structs.replace(settings, graphs_dir=str(tmp_path / "graphs"), transform_isolation="unisolated")
    server = LiveServer(chosen).start()
    try:
        with httpx.Client(base_url=server.url + "/api/v1", headers=AUTH) as api:
            assert api.post("/orchestrations/child/run", json={"message": "21"}).json()["shared_state"]["out"] == 42
            assert api.get("/health").json()["transforms"] == "unisolated"
    finally:
        server.stop()


@pytest.mark.parametrize(("env", "error"), [
    ({"ORCH_TRANSFORM_ISOLATION": "isolated", "ORCH_TRANSFORM_BWRAP": NO_BWRAP},
     "orch: ORCH_TRANSFORM_ISOLATION is 'isolated' but transforms cannot be isolated here: bubblewrap is not "
     f"installed: no `{NO_BWRAP}` command"),
    ({"ORCH_TRANSFORM_ISOLATION": "always"}, "orch: transform_isolation (ORCH_TRANSFORM_ISOLATION): Invalid enum value 'always'"),
], ids=["isolation-required", "bad-value"])
def test_serve_stops_before_listening_when_isolation_cannot_be_had(tmp_path: Path, env: dict[str, str],
                                                                     error: str) -> None:
    graphs_dir(tmp_path, {"hello": HELLO})
    out = subprocess.run([sys.executable, "-m", "orch.server.cli", "serve", "--port", str(free_port())],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "ORCH_API_KEYS": KEY, **env})
    assert (out.returncode, out.stderr.strip()) == (2, error)
