"""The bounds a transform runs under, and how the way its process ended becomes a result or an error."""

from __future__ import annotations

import signal
from typing import Any

import msgspec

from orch.errors import RunError

_STDERR_TAIL_LINES = 5


class TransformLimits(msgspec.Struct, frozen=True):
    """Bounds on one transform run.

    `memory_mb`, `cpu_seconds`, `output_mb` and `open_files` bind each process; `processes`
    (threads count too) binds the whole sandbox and holds only when it is isolated;
    `scratch_mb` caps each of the two writable in-memory directories of an isolated run.
    """

    timeout_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 512
    processes: int = 16
    output_mb: int = 32
    open_files: int = 32
    scratch_mb: int = 64


class TransformError(RunError):
    """The transform code raised, overran a limit, or its process died without a result."""

    code = "transform_failed"


class _Reply(msgspec.Struct):
    ok: bool
    result: Any = None
    error: str = ""
    type: str | None = None
    line: int | None = None


def outcome(returncode: int, reply_bytes: bytes, stderr: str, limits: TransformLimits) -> Any:
    """Turn the child's exit status (negative: killed by that signal), its reply and its stderr
    into the transform's result, or raise a TransformError that says what went wrong."""
    cpu_limit = f"transform exceeded its CPU limit of {limits.cpu_seconds}s"
    memory_limit = f"transform exceeded its memory limit of {limits.memory_mb} MB"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise TransformError(cpu_limit)
    if returncode == -signal.SIGXFSZ:
        raise TransformError(f"transform exceeded its output limit of {limits.output_mb} MB")
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
