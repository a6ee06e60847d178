"""Hostile transforms, each through a whole run on an engine: what an isolated transform can reach
(nothing of the host), what it can leave behind (no process), and how each run ends.

These need bubblewrap; they skip without it, and fail instead under ORCH_REQUIRE_ISOLATION=1
(.ci/run). The same cases against a running server are in tests/server/test_transform_security.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, require_isolation
from tests.engine.test_sandbox import transform_processes


@pytest.fixture(autouse=True)
def isolated() -> Iterator[None]:
    require_isolation()
    yield
    assert transform_processes() == [], "a transform process outlived its step"


def hostile(code: str) -> str:
    """A one-step orchestration running `code`; the run's message is JSON the code reads as `given`."""
    code = "import json, os\ngiven = json.loads(state['user_input'] or 'null')\n" + code
    return json.dumps({"id": "hostile", "name": "Hostile", "steps": [
        {"id": "t", "type": "transform", "transform_code": code, "output_key": "out"}]})


async def run(make_engine: Any, url: str, code: str, given: Any = None, **settings: Any) -> tuple[str, Any]:
    """(status, the transform's result) of a finished run, or (status, error) when it failed."""
    engine = await make_engine(url, hostile(code), transform_isolation="isolated", **settings)
    assert engine.services.transforms.mode == "isolated"
    result = await engine.run("hostile", json.dumps(given))
    return result.status, result.shared_state.get("out") if result.status == "completed" else result.response


# Each value is what the attempt got: the text read, or the name of the exception it raised.
ATTEMPT = """
def attempt(action, *args):
    try:
        return action(*args)
    except Exception as exc:
        return type(exc).__name__
def read(path):
    with open(path, 'rb') as f:
        return f.read().decode('latin1')
"""


async def test_environment_of_the_server_and_its_processes_is_out_of_reach(make_engine, sqlite_url,
                                                                          monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-secret")
    code = ATTEMPT + ("result = {'own': dict(os.environ), 'server': attempt(read, f\"/proc/{given}/environ\"),\n"
                      "          'parent': attempt(read, f'/proc/{os.getppid()}/environ'),\n"
                      "          'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}")
    status, out = await run(make_engine, sqlite_url, code, os.getpid())
    assert status == "completed"
    assert out["own"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PWD": "/scratch"}
    assert out["server"] == "FileNotFoundError"  # the server's PID does not exist in the sandbox
    # Its parent is the sandbox's PID 1 (bubblewrap), started with the same empty environment.
    assert out["parent"] in ("PermissionError", "PATH=/usr/local/bin:/usr/bin:/bin\0LANG=C.UTF-8\0")
    assert out["pids"] == [1, 2]
    assert "sk-live-secret" not in json.dumps(out)


async def test_host_files_are_out_of_reach(make_engine, sqlite_url, tmp_path) -> None:
    db = sqlite_url.removeprefix("sqlite:///")
    targets = [db, os.getcwd(), str(ROOT / "pyproject.toml"), "/etc/passwd", "/etc/shadow", "/root", "/home"]
    code = ATTEMPT + "result = {p: attempt(os.listdir if os.path.isdir(p) else read, p) for p in given}\n" \
                     "result['/etc'] = os.listdir('/etc')"
    status, out = await run(make_engine, sqlite_url, code, targets)
    assert status == "completed"
    assert Path(db).exists() and Path("/etc/passwd").exists()
    # /root holds only the path down to a runtime that lives there (pyenv); it is a bare directory.
    assert {p: out[p] for p in targets if p != "/root"} == {p: "FileNotFoundError" for p in targets if p != "/root"}
    assert out["/root"] in ("FileNotFoundError", [".pyenv"])
    assert out["/etc"] == ["ld.so.cache"]


async def test_writing_outside_the_scratch_directory_fails(make_engine, sqlite_url, tmp_path) -> None:
    targets = ["/", "/etc", "/usr/lib", "/proc", "/dev", "/dev/shm", os.getcwd(), str(tmp_path), "RUNTIME"]
    code = ATTEMPT + ("def write(directory):\n"
                      "    with open(os.path.join(directory, 'planted'), 'w') as f:\n"
                      "        f.write('x')\n"
                      "    return 'written'\n"
                      "runtime = os.path.dirname(os.__file__)\n"
                      "result = {d: attempt(write, runtime if d == 'RUNTIME' else d) for d in given + ['.', '/tmp']}")
    status, out = await run(make_engine, sqlite_url, code, targets)
    assert status == "completed"
    assert out.pop(".") == out.pop("/tmp") == "written"
    assert "written" not in out.values(), out
    assert not (Path(os.getcwd()) / "planted").exists() and not (tmp_path / "planted").exists()


async def test_no_network_not_even_the_host_loopback(make_engine, sqlite_url) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = ATTEMPT + ("import socket\n"
                          "def connect(host, port):\n"
                          "    socket.create_connection((host, port), timeout=5).close()\n"
                          "    return 'connected'\n"
                          "result = [attempt(connect, '127.0.0.1', port) for port in given] + "
                          "[attempt(connect, '1.1.1.1', 53), attempt(socket.getaddrinfo, 'example.com', 80)]")
        status, out = await run(make_engine, sqlite_url, code, [port, 5432])
    assert (status, out) == ("completed", ["ConnectionRefusedError", "ConnectionRefusedError", "OSError", "gaierror"])


FORKS = """
import time
forked = 0
for i in range(200):
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    forked += 1
result = forked
"""


async def test_200_forks_hit_the_process_cap(make_engine, sqlite_url) -> None:
    status, error = await run(make_engine, sqlite_url, FORKS)
    assert (status, error) == ("failed", "step t: transform raised BlockingIOError: "
                                         "[Errno 11] Resource temporarily unavailable (line 7)")


async def test_200_forks_under_a_higher_cap_all_end_with_the_step(make_engine, sqlite_url) -> None:
    status, forked = await run(make_engine, sqlite_url, FORKS, transform_max_processes=256)
    assert (status, forked) == ("completed", 200)


async def test_a_fork_bomb_ends_at_the_cap(make_engine, sqlite_url) -> None:
    status, error = await run(make_engine, sqlite_url, "while True:\n    os.fork()")
    assert (status, error) == ("failed", "step t: transform raised BlockingIOError: "
                                         "[Errno 11] Resource temporarily unavailable (line 4)")


async def test_a_fork_bomb_that_keeps_trying_ends_at_the_time_limit(make_engine, sqlite_url) -> None:
    code = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    status, error = await run(make_engine, sqlite_url, code, transform_timeout_seconds=2)
    assert (status, error) == ("failed", "step t: transform exceeded its time limit of 2s")


async def test_a_double_fork_into_a_new_session_ends_with_the_step(make_engine, sqlite_url) -> None:
    code = ("import time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(1)\n"
            "        open('/scratch/late', 'w').close()\n"
            "        time.sleep(30)\n"
            "    os._exit(0)\n"
            "time.sleep(0.2)\n"
            "alive = [p for p in os.listdir('/proc') if p.isdigit() and read(f'/proc/{p}/stat').split()[2] != 'Z']\n"
            "result = len(alive)")
    status, seen = await run(make_engine, sqlite_url, ATTEMPT + code)
    # bubblewrap's PID 1, the transform and the grandchild, alive when the step ended
    assert (status, seen) == ("completed", 3)
    time.sleep(1.5)
    assert transform_processes() == []


@pytest.mark.parametrize(("code", "settings", "error"), [
    ("result = len(bytearray(1 << 30))", {}, "transform exceeded its memory limit of 512 MB"),
    ("while True:\n    pass", {"transform_cpu_seconds": 1, "transform_timeout_seconds": 10},
     "transform exceeded its CPU limit of 1s"),
    ("import time\ntime.sleep(60)", {"transform_timeout_seconds": 1}, "transform exceeded its time limit of 1s"),
    ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", {}, "transform exceeded its output limit of 32 MB"),
    ("result = 'x' * (40 << 20)", {}, "transform exceeded its output limit of 32 MB"),
    ("for i in range(200):\n    with open(f'f{i}', 'wb') as f:\n        f.write(bytes(1 << 20))", {},
     "transform raised OSError: [Errno 28] No space left on device (line 5)"),
    ("import threading, time\nfor i in range(100):\n    threading.Thread(target=time.sleep, args=(30,)).start()", {},
     "transform raised RuntimeError: can't start new thread (line 5)"),
], ids=["memory", "cpu", "time", "stdout-flood", "huge-result", "scratch-flood", "threads"])
async def test_limits_fail_the_step_cleanly(make_engine, sqlite_url, code: str, settings: dict[str, Any],
                                            error: str) -> None:
    started = time.monotonic()
    assert await run(make_engine, sqlite_url, code, **settings) == ("failed", f"step t: {error}")
    assert time.monotonic() - started < 15
