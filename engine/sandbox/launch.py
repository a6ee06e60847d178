"""Starting a transform's process, isolated or not, and making sure nothing of it outlives the step.

Isolated, the process is bubblewrap's: it reports the PID of the sandbox's first process (PID 1
of the sandbox's PID namespace) on an info pipe, and ending that process makes the kernel kill
every process in the namespace; its pidfd tells when they are all gone. Unisolated, the
transform leads a process group of its own, killed when it ends; a process that starts another
session escapes that (one reason this mode is for local use).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass
from typing import IO, Any, Literal

from orch.sandbox.bubblewrap import SANDBOX_ID, Runtime, bwrap_command, write_id_maps
from orch.sandbox.child import CHILD_SOURCE, child_args, origin_tag
from orch.sandbox.environment import child_env
from orch.sandbox.limits import TransformLimits

_SETUP_SECONDS = 10.0  # bubblewrap's own start; the transform's time limit starts after it


@dataclass(frozen=True)
class Sandbox:
    """How this server runs transforms. `transform_uid` is set when the server runs as root:
    the unprivileged id outside that the sandbox user maps to. `covered` are host paths hidden
    from the sandbox although they lie inside a runtime bind."""

    mode: Literal["isolated", "unisolated"]
    runtime: Runtime
    bwrap: str | None = None
    transform_uid: int | None = None
    covered: tuple[str, ...] = ()


class Child:
    """One transform's process tree, from start to the guarantee that none of it is left."""

    def __init__(self, proc: asyncio.subprocess.Process, pidfd: int | None, isolated: bool) -> None:
        self.proc = proc
        self.pidfd = pidfd  # the sandbox's PID 1, isolated only
        self.isolated = isolated

    async def wait(self, timeout: float) -> int:
        """The transform's exit status (negative: the signal that killed it); TimeoutError past `timeout`."""
        returncode = await asyncio.wait_for(self.proc.wait(), timeout)
        if self.isolated and returncode > 128:
            return -(returncode - 128)  # bubblewrap reports a death by signal n as 128 + n
        return returncode

    async def close(self) -> None:
        """Kill whatever is left of the transform and return once it is all gone.

        The process group holds the unisolated transform and what it forked; isolated, it holds
        bubblewrap and the sandbox's PID 1 (even while bubblewrap is still setting up), whose
        death ends the namespace: the transform leads a session of its own inside it.
        """
        if self.proc.returncode is None or not self.isolated:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.isolated:
            await self._end_namespace()
        await self.proc.wait()
        await _group_gone(self.proc.pid)

    async def _end_namespace(self) -> None:
        if self.pidfd is None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            await _readable(self.pidfd)  # the kernel has reaped every process of the namespace
        finally:
            os.close(self.pidfd)
            self.pidfd = None


async def start(sandbox: Sandbox, limits: TransformLimits, *, stdin: IO[bytes], stdout: IO[bytes],
                stderr: IO[bytes], workdir: str) -> Child:
    """Start the transform's process; the caller must `close()` the child whatever happens."""
    env = child_env()
    if sandbox.mode == "unisolated":
        program = [sandbox.runtime.executable, "-I", "-S", "-c", CHILD_SOURCE,
                   *child_args(limits, process_cap=False, become_uid=None), origin_tag()]
        return await _spawn(program, isolated=False, stdin=stdin, stdout=stdout, stderr=stderr, cwd=workdir, env=env)
    assert sandbox.bwrap is not None
    as_root = sandbox.transform_uid is not None
    program = [sandbox.runtime.executable, "-I", "-S", "-c", CHILD_SOURCE,
               *child_args(limits, process_cap=True, become_uid=SANDBOX_ID if as_root else None), origin_tag()]
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe() if as_root else (-1, -1)
    try:
        cmd = bwrap_command(sandbox.bwrap, sandbox.runtime, program, limits=limits, info_fd=info_w,
                            userns_block_fd=block_r if as_root else None, covered=sandbox.covered, env=env)
        child = await _spawn(cmd, isolated=True, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                             pass_fds=(info_w, block_r) if as_root else (info_w,))
    except BaseException:
        for fd in (info_r, block_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (info_w, block_r):
            if fd >= 0:
                os.close(fd)
    try:
        pid = _child_pid(await asyncio.wait_for(_read_to_end(info_r), _SETUP_SECONDS))
        if pid is not None:
            child.pidfd = os.pidfd_open(pid)
            if as_root:
                assert sandbox.transform_uid is not None
                write_id_maps(pid, sandbox.transform_uid)
                os.write(block_w, b"1")
    except BaseException:
        await child.close()
        raise
    finally:
        os.close(info_r)
        if block_w >= 0:
            os.close(block_w)
    return child


async def _spawn(argv: list[str], *, isolated: bool, **options: Any) -> Child:
    """Start `argv` leading a process group of its own. A cancellation that arrives while it
    starts lets the start finish, then ends the group: nothing is left half-started."""
    spawning = asyncio.ensure_future(asyncio.create_subprocess_exec(*argv, start_new_session=True, **options))
    try:
        proc = await asyncio.shield(spawning)
    except asyncio.CancelledError:
        [started] = await asyncio.gather(spawning, return_exceptions=True)
        if isinstance(started, asyncio.subprocess.Process):
            await Child(started, None, isolated).close()
        raise
    return Child(proc, None, isolated)


def _child_pid(info: bytes) -> int | None:
    """The sandbox's PID 1 from bubblewrap's info document; None when bubblewrap failed first."""
    try:
        pid = json.loads(info)["child-pid"]
    except (ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) else None


async def _read_to_end(fd: int) -> bytes:
    """Everything written to the pipe `fd` until its last writer closes it."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


async def _group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait until the process group `pgid`, killed, has no process left (SIGKILL takes effect
    asynchronously, and the PID 1 of a namespace exits only once all its processes are gone)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        await asyncio.sleep(0.005)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
