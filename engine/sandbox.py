"""Running `transform` code in a separate, limited process (SPEC §4.6).

A transform is arbitrary Python written by a graph author. It runs in a fresh interpreter
(`-I -S`: no user site, no environment-driven imports) with an environment that holds only
PATH and LANG, inside an empty temporary directory, under rlimits on CPU time, address space,
open files and file size. State goes in and `result` comes out as JSON. The child's stdin,
stdout and stderr are files in a private temporary directory rather than pipes, so a chatty
transform cannot fill the parent's memory and nothing is left open when it is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from orch.errors import RunError, StepTimeout

__all__ = ["TransformError", "TransformLimits", "check_transform_syntax", "run_transform"]

_OUTPUT_LIMIT_MB = 32
_OPEN_FILES = 32
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_STDERR_TAIL_LINES = 5

# Runs in the child as `python -I -S -c _BOOTSTRAP <cpu_seconds> <memory_mb> <output_mb> <files>`.
# The reply goes to a duplicate of the original stdout; fd 1 and sys.stdout are pointed at
# stderr so whatever the code prints cannot corrupt it. `os._exit` skips atexit handlers and
# the wait for non-daemon threads the code may have left behind.
_BOOTSTRAP = r"""
import builtins, json, os, resource, sys, traceback
cpu, mem, out, files = (int(a) for a in sys.argv[1:5])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
resource.setrlimit(resource.RLIMIT_FSIZE, (out << 20, out << 20))
resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
reply_fd = os.dup(1)
os.dup2(2, 1)
sys.stdout = sys.stderr

def line_of(exc):
    if isinstance(exc, SyntaxError) and exc.filename == "<transform>":
        return exc.lineno
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<transform>":
            line = lineno
    return line

def reject(value):
    raise TypeError(type(value).__name__)

try:
    job = json.loads(sys.stdin.buffer.read())
    scope = {"state": job["state"], "json": json, "__builtins__": builtins}
    exec(compile(job["code"], "<transform>", "exec"), scope)
    result = scope.get("result")
except BaseException as exc:
    error = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    reply = {"ok": False, "type": type(exc).__name__, "error": error, "line": line_of(exc)}
    text = json.dumps(reply)
else:
    try:
        text = json.dumps({"ok": True, "result": result}, default=reject, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        text = json.dumps({"ok": False, "error": f"transform result is not JSON-serialisable: {exc}"})
with os.fdopen(reply_fd, "wb") as stream:
    stream.write(text.encode())
sys.stderr.flush()
os._exit(0)
"""


class TransformLimits(msgspec.Struct, frozen=True):
    """Bounds on one transform run: wall-clock time, CPU time and address space."""

    timeout_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 512


class TransformError(RunError):
    """The transform code raised, overran a limit, or its process died without a result."""

    code = "transform_failed"


class _Reply(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str = ""
    type: str | None = None
    line: int | None = None


async def run_transform(
    code: str, state: dict[str, Any], *, limits: TransformLimits = TransformLimits()
) -> Any:
    """Run `code` over a copy of `state` in a child process and return its `result` (or None).

    Raises StepTimeout past `limits.timeout_seconds` and TransformError for everything else
    that goes wrong; on cancellation the child is killed before CancelledError propagates.
    """
    try:
        job = msgspec.json.encode({"code": code, "state": state})
    except (TypeError, ValueError) as exc:
        raise TransformError(f"transform state is not JSON-serialisable: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="transform-") as tmp:
        root = Path(tmp)
        workdir = root / "work"
        workdir.mkdir()
        (root / "job.json").write_bytes(job)
        with (
            open(root / "job.json", "rb") as stdin,
            open(root / "reply.json", "wb") as stdout,
            open(root / "stderr.log", "wb") as stderr,
        ):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _BOOTSTRAP,
                str(limits.cpu_seconds), str(limits.memory_mb), str(_OUTPUT_LIMIT_MB), str(_OPEN_FILES),
                stdin=stdin, stdout=stdout, stderr=stderr, cwd=workdir, env=_ENV, start_new_session=True,
            )  # fmt: skip
            try:
                returncode = await asyncio.wait_for(proc.wait(), limits.timeout_seconds)
            except TimeoutError:
                raise StepTimeout(
                    f"transform exceeded its time limit of {limits.timeout_seconds:g}s"
                ) from None
            finally:
                if proc.returncode is None:
                    # The whole session goes, so nothing the code spawned outlives the step.
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    await proc.wait()
        reply = (root / "reply.json").read_bytes()
        stderr_text = (root / "stderr.log").read_bytes().decode("utf-8", "replace")
    return _outcome(returncode, reply, stderr_text, limits)


def _outcome(returncode: int, reply_bytes: bytes, stderr: str, limits: TransformLimits) -> Any:
    """Turn the child's exit status, reply and stderr into the result or a TransformError."""
    cpu_limit = f"transform exceeded its CPU limit of {limits.cpu_seconds}s"
    memory_limit = f"transform exceeded its memory limit of {limits.memory_mb} MB"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise TransformError(cpu_limit)
    if returncode == -signal.SIGXFSZ:
        raise TransformError(f"transform exceeded its output limit of {_OUTPUT_LIMIT_MB} MB")
    try:
        reply = msgspec.json.decode(reply_bytes, type=_Reply) if returncode == 0 else None
    except msgspec.DecodeError:
        reply = None
    if reply is None:
        if "MemoryError" in stderr:
            raise TransformError(memory_limit)
        message = f"transform process failed (exit code {returncode})"
        tail = "\n".join(stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise TransformError(f"{message}; stderr:\n{tail}" if tail else message)
    if reply.ok:
        return reply.result
    if reply.type == "MemoryError":
        raise TransformError(memory_limit)
    if reply.type is None:
        raise TransformError(reply.error)
    message = f"transform raised {reply.type}"
    if reply.error:
        message += f": {reply.error}"
    if reply.line is not None:
        message += f" (line {reply.line})"
    raise TransformError(message)


def check_transform_syntax(code: str) -> str | None:
    """Compile `code` without running it; a one-line problem such as "invalid syntax (line 3)", or None."""
    try:
        compile(code, "<transform>", "exec")
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})" if exc.lineno is not None else exc.msg
    except (ValueError, RecursionError, MemoryError) as exc:
        return str(exc) or type(exc).__name__
    return None
