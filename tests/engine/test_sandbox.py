"""run_transform in both of its modes: results, errors and limits, and no process left behind.
The hostile cases, through whole runs, are in test_sandbox_isolation.py."""

from __future__ import annotations

import asyncio
import os
from typing import Iterator

import pytest

from orch.errors import StepTimeout
from orch.sandbox import Sandbox, TransformError, TransformLimits, check_transform_syntax, run_transform
from orch.sandbox.child import MARKER
from orch.sandbox.isolation import transform_policy
from orch.settings import Settings
from tests.conftest import require_isolation


def transform_processes(origin: int | None = None) -> list[int]:
    """PIDs of the transform processes that the process `origin` (default: this one) started,
    wherever they are now: each one's command line ends with the tag naming its origin.
    (Other test runs on the machine have transforms of their own.)"""
    tag = f"{MARKER}-of={origin or os.getpid()}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if tag in f.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(params=["isolated", "unisolated"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox of each mode; after the test, no transform process may be left."""
    if request.param == "isolated":
        require_isolation()
    policy = transform_policy(Settings(transform_isolation=request.param), local=False)
    assert policy.sandbox is not None and policy.mode == request.param
    yield policy.sandbox
    assert transform_processes() == []


async def test_result_is_computed_from_a_copy_of_state(sandbox: Sandbox) -> None:
    state = {"items": [1, 2, 3], "name": "x"}
    code = "state['items'].append(4)\nresult = {'total': sum(state['items']), 'name': state['name'].upper()}"
    assert await run_transform(code, state, sandbox=sandbox) == {"total": 10, "name": "X"}
    assert state == {"items": [1, 2, 3], "name": "x"}


async def test_missing_result_is_none(sandbox: Sandbox) -> None:
    assert await run_transform("x = 1", {}, sandbox=sandbox) is None


async def test_json_module_is_available(sandbox: Sandbox) -> None:
    assert await run_transform("result = json.loads(state['raw'])", {"raw": '{"a": [1]}'}, sandbox=sandbox) == {"a": [1]}


async def test_the_standard_library_works(sandbox: Sandbox) -> None:
    code = ("import re, datetime, hashlib, sqlite3, zoneinfo, tempfile\n"
            "db = sqlite3.connect(':memory:')\n"
            "with tempfile.NamedTemporaryFile('w') as f:\n"
            "    f.write('x')\n"
            "result = [re.sub('a', 'b', 'aa'), hashlib.sha256(b'').hexdigest()[:8], db.execute('select 1').fetchone()[0],\n"
            "          datetime.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo('Europe/Paris')).isoformat()]")
    assert await run_transform(code, {}, sandbox=sandbox) == ["bb", "e3b0c442", 1, "2026-01-01T00:00:00+01:00"]


async def test_printing_does_not_corrupt_the_reply(sandbox: Sandbox) -> None:
    code = "import os, sys\nprint('hello')\nsys.stdout.write('{not json')\nos.write(1, b'raw')\nresult = 7"
    assert await run_transform(code, {}, sandbox=sandbox) == 7


async def test_exception_names_type_message_and_line(sandbox: Sandbox) -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("x = 1\ny = x / 0\nresult = y", {}, sandbox=sandbox)
    assert info.value.message == "transform raised ZeroDivisionError: division by zero (line 2)"
    assert info.value.code == "transform_failed"


async def test_exception_line_is_inside_the_transform_not_the_library(sandbox: Sandbox) -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("import json\n\njson.loads('{')", {}, sandbox=sandbox)
    assert info.value.message == (
        "transform raised JSONDecodeError: Expecting property name enclosed in double quotes:"
        " line 1 column 2 (char 1) (line 3)"
    )


async def test_syntax_error_at_run_time(sandbox: Sandbox) -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("x = 1\nresult = (x +", {}, sandbox=sandbox)
    assert info.value.message == "transform raised SyntaxError: '(' was never closed (line 2)"


async def test_unserialisable_result(sandbox: Sandbox) -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("result = {'a': {1, 2}}", {}, sandbox=sandbox)
    assert info.value.message == "transform result is not JSON-serialisable: set"


async def test_dead_process_reports_its_stderr(sandbox: Sandbox) -> None:
    code = "import os, sys\nsys.stderr.write('first\\nlast words\\n')\nsys.stderr.flush()\nos._exit(3)"
    with pytest.raises(TransformError) as info:
        await run_transform(code, {}, sandbox=sandbox)
    assert info.value.message == "transform process failed (exit code 3); stderr:\nfirst\nlast words"


async def test_timeout_kills_the_process(sandbox: Sandbox) -> None:
    with pytest.raises(StepTimeout) as info:
        await run_transform("while True:\n    pass\n", {}, sandbox=sandbox, limits=TransformLimits(timeout_seconds=1))
    assert info.value.message == "transform exceeded its time limit of 1s"
    assert transform_processes() == []


async def test_cpu_limit(sandbox: Sandbox) -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("while True:\n    pass", {}, sandbox=sandbox,
                            limits=TransformLimits(timeout_seconds=5, cpu_seconds=1))
    assert info.value.message == "transform exceeded its CPU limit of 1s"


async def test_memory_limit(sandbox: Sandbox) -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("result = len(bytearray(500 * 1024 * 1024))", {}, sandbox=sandbox,
                            limits=TransformLimits(memory_mb=200))
    assert info.value.message == "transform exceeded its memory limit of 200 MB"


async def test_environment_is_built_from_nothing(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    code = "import os\nresult = dict(os.environ)"
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    # bubblewrap sets PWD to the directory it starts the program in.
    expected = {**base, "PWD": "/scratch"} if sandbox.mode == "isolated" else base
    assert await run_transform(code, {}, sandbox=sandbox) == expected


async def test_runs_in_a_fresh_directory_gone_afterwards(sandbox: Sandbox) -> None:
    cwd, listing = await run_transform("import os\nopen('f', 'w').close()\nresult = [os.getcwd(), os.listdir()]", {},
                                       sandbox=sandbox)
    assert listing == ["f"]
    assert cwd != os.getcwd()
    assert not os.path.exists(cwd) or not os.listdir(cwd)


async def test_cancellation_kills_the_child(sandbox: Sandbox) -> None:
    task = asyncio.create_task(run_transform("while True:\n    pass\n", {}, sandbox=sandbox))
    while not transform_processes():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transform_processes() == []


async def test_cancellation_while_the_process_starts_leaves_nothing(sandbox: Sandbox) -> None:
    for delay in (0, 0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032):
        task = asyncio.create_task(run_transform("while True:\n    pass\n", {}, sandbox=sandbox))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert transform_processes() == [], f"left behind when cancelled after {delay}s"


async def test_forked_processes_end_with_the_transform(sandbox: Sandbox) -> None:
    code = ("import os, time\n"
            "for i in range(5):\n"
            "    if os.fork() == 0:\n"
            "        time.sleep(30)\n"
            "result = 'done'")
    assert await run_transform(code, {}, sandbox=sandbox) == "done"
    assert transform_processes() == []


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("result = state['a']", None),
        ("x = 1\n\nif x\n    y = 2", "expected ':' (line 3)"),
        ("result = (1 +", "'(' was never closed (line 1)"),
        ("x = 1\n  y = 2", "unexpected indent (line 2)"),
    ],
)
def test_check_transform_syntax(code: str, problem: str | None) -> None:
    assert check_transform_syntax(code) == problem
