"""Running `transform` code (SPEC §4.6): state in as JSON, `result` out as JSON.

The child's stdin, stdout and stderr are files in a private temporary directory rather than
pipes, so a chatty transform cannot fill the server's memory and nothing is left open when it
is killed. Isolated, the directory stays outside the sandbox (only the three open files go
in); unisolated, the child also works in a fresh subdirectory of it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec

from orch.errors import StepTimeout
from orch.sandbox import launch
from orch.sandbox.launch import Sandbox
from orch.sandbox.limits import TransformError, TransformLimits, outcome


async def run_transform(code: str, state: dict[str, Any], *, sandbox: Sandbox,
                        limits: TransformLimits = TransformLimits()) -> Any:
    """Run `code` over a copy of `state` in a child process and return its `result` (or None).

    Raises StepTimeout past `limits.timeout_seconds` and TransformError for everything else
    that goes wrong; whatever happens, including cancellation, every process the code started
    is gone when this returns or raises.
    """
    try:
        job = msgspec.json.encode({"code": code, "state": state})
    except (TypeError, ValueError) as exc:
        raise TransformError(f"transform state is not JSON-serialisable: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="orch-transform-") as tmp:
        root = Path(tmp)
        workdir = root / "work"
        workdir.mkdir()
        (root / "job.json").write_bytes(job)
        with (
            open(root / "job.json", "rb") as stdin,
            open(root / "reply.json", "wb") as stdout,
            open(root / "stderr.log", "wb") as stderr,
        ):
            child = await launch.start(sandbox, limits, stdin=stdin, stdout=stdout, stderr=stderr,
                                       workdir=str(workdir))
            try:
                returncode = await child.wait(limits.timeout_seconds)
            except TimeoutError:
                raise StepTimeout(f"transform exceeded its time limit of {limits.timeout_seconds:g}s") from None
            finally:
                await child.close()
        reply = (root / "reply.json").read_bytes()
        stderr_text = (root / "stderr.log").read_bytes().decode("utf-8", "replace")
    return outcome(returncode, reply, stderr_text, limits)


def check_transform_syntax(code: str) -> str | None:
    """Compile `code` without running it; a one-line problem such as "invalid syntax (line 3)", or None."""
    try:
        compile(code, "<transform>", "exec")
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})" if exc.lineno is not None else exc.msg
    except (ValueError, RecursionError, MemoryError) as exc:
        return str(exc) or type(exc).__name__
    return None
