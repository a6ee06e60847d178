from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from orch.errors import StepTimeout
from orch.sandbox import TransformError, TransformLimits, check_transform_syntax, run_transform

# Writes the child's pid where the test can see it, then spins forever.
SPIN = "import os\nopen(state['pid_file'], 'w').write(str(os.getpid()))\nwhile True:\n    pass\n"


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_result_is_computed_from_a_copy_of_state() -> None:
    state = {"items": [1, 2, 3], "name": "x"}
    code = "state['items'].append(4)\nresult = {'total': sum(state['items']), 'name': state['name'].upper()}"
    assert await run_transform(code, state) == {"total": 10, "name": "X"}
    assert state == {"items": [1, 2, 3], "name": "x"}


async def test_missing_result_is_none() -> None:
    assert await run_transform("x = 1", {}) is None


async def test_json_module_is_available() -> None:
    assert await run_transform("result = json.loads(state['raw'])", {"raw": '{"a": [1]}'}) == {"a": [1]}


async def test_printing_does_not_corrupt_the_reply() -> None:
    code = "import os, sys\nprint('hello')\nsys.stdout.write('{not json')\nos.write(1, b'raw')\nresult = 7"
    assert await run_transform(code, {}) == 7


async def test_exception_names_type_message_and_line() -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("x = 1\ny = x / 0\nresult = y", {})
    assert info.value.message == "transform raised ZeroDivisionError: division by zero (line 2)"
    assert info.value.code == "transform_failed"


async def test_exception_line_is_inside_the_transform_not_the_library() -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("import json\n\njson.loads('{')", {})
    assert info.value.message == (
        "transform raised JSONDecodeError: Expecting property name enclosed in double quotes:"
        " line 1 column 2 (char 1) (line 3)"
    )


async def test_syntax_error_at_run_time() -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("x = 1\nresult = (x +", {})
    assert info.value.message == "transform raised SyntaxError: '(' was never closed (line 2)"


async def test_unserialisable_result() -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("result = {'a': {1, 2}}", {})
    assert info.value.message == "transform result is not JSON-serialisable: set"


async def test_dead_process_reports_its_stderr() -> None:
    code = "import os, sys\nsys.stderr.write('first\\nlast words\\n')\nsys.stderr.flush()\nos._exit(3)"
    with pytest.raises(TransformError) as info:
        await run_transform(code, {})
    assert info.value.message == "transform process failed (exit code 3); stderr:\nfirst\nlast words"


async def test_timeout_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(StepTimeout) as info:
        await run_transform(SPIN, {"pid_file": str(pid_file)}, limits=TransformLimits(timeout_seconds=1))
    assert info.value.message == "transform exceeded its time limit of 1s"
    assert_gone(int(pid_file.read_text()))


async def test_cpu_limit() -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("while True:\n    pass", {}, limits=TransformLimits(timeout_seconds=5, cpu_seconds=1))
    assert info.value.message == "transform exceeded its CPU limit of 1s"


async def test_memory_limit() -> None:
    with pytest.raises(TransformError) as info:
        await run_transform("result = len(bytearray(500 * 1024 * 1024))", {}, limits=TransformLimits(memory_mb=200))
    assert info.value.message == "transform exceeded its memory limit of 200 MB"


async def test_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    code = "import os\nresult = [os.environ.get('OPENAI_API_KEY'), dict(os.environ)]"
    assert await run_transform(code, {}) == [None, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}]


async def test_runs_in_a_fresh_directory_removed_afterwards() -> None:
    cwd, listing = await run_transform("import os\nopen('f', 'w').close()\nresult = [os.getcwd(), os.listdir()]", {})
    assert listing == ["f"]
    assert cwd != os.getcwd()
    assert not os.path.exists(cwd)


async def test_cancellation_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(run_transform(SPIN, {"pid_file": str(pid_file)}))
    while not pid_file.exists() or not pid_file.read_text():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(int(pid_file.read_text()))


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
