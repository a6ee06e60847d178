"""The program a transform's process runs: limits first, then the author's code, then the reply.

It runs as `python -I -S -c CHILD_SOURCE <args>`: no user site, no environment-driven imports.
The job (code and state) arrives as JSON on stdin; the reply goes to a duplicate of the
original stdout, while fd 1 and sys.stdout point at stderr so whatever the code prints cannot
corrupt it. Python ignores SIGXFSZ, so output past RLIMIT_FSIZE shows up as EFBIG errors, which
become the output-limit error. `os._exit` skips atexit handlers and the wait for non-daemon threads the code may
have left behind. A process the code forked never replies: it leaves as soon as the code
returns or raises in it.

When the server runs as root, an isolated transform starts as root of its own user namespace
with only CAP_SETUID and CAP_SETGID, and gives up both by becoming the sandbox user before
anything else: the process cap (RLIMIT_NPROC) is not enforced for root.
"""

from __future__ import annotations

import os

from orch.sandbox.limits import TransformLimits

MARKER = "orch-transform"  # first line of the program: finds a transform's processes in `ps`


def origin_tag() -> str:
    """The last argument of every transform process: which server process started it (the
    child ignores it; `ps` shows it)."""
    return f"{MARKER}-of={os.getpid()}"

CHILD_SOURCE = "# " + MARKER + r"""
import builtins, errno, json, os, resource, sys, traceback
cpu, mem, out, files, nproc, uid = (int(a) for a in sys.argv[1:7])
if uid >= 0:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid):
        os._exit(121)
if nproc > 0:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
resource.setrlimit(resource.RLIMIT_FSIZE, (out << 20, out << 20))
resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
reply_fd = os.dup(1)
os.dup2(2, 1)
sys.stdout = sys.stderr
main_pid = os.getpid()
too_much = {"ok": False, "error": f"transform exceeded its output limit of {out} MB"}

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
    if os.getpid() != main_pid:
        os._exit(1)
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        reply = too_much
    else:
        error = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        reply = {"ok": False, "type": type(exc).__name__, "error": error, "line": line_of(exc)}
    text = json.dumps(reply)
else:
    if os.getpid() != main_pid:
        os._exit(0)
    try:
        text = json.dumps({"ok": True, "result": result}, default=reject, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        text = json.dumps({"ok": False, "error": f"transform result is not JSON-serialisable: {exc}"})

def send(data):
    view = memoryview(data)
    while view:
        view = view[os.write(reply_fd, view):]

try:
    send(text.encode())
except OSError:  # a result past the output limit: the reply says so instead
    os.ftruncate(reply_fd, 0)
    os.lseek(reply_fd, 0, os.SEEK_SET)
    send(json.dumps(too_much).encode())
try:
    sys.stderr.flush()
except OSError:
    pass
os._exit(0)
"""


def child_args(limits: TransformLimits, *, process_cap: bool, become_uid: int | None) -> list[str]:
    """The arguments after `-c CHILD_SOURCE`. The process cap is set only where the child has a
    user namespace of its own: elsewhere RLIMIT_NPROC would count every process of the
    server's user."""
    return [str(limits.cpu_seconds), str(limits.memory_mb), str(limits.output_mb), str(limits.open_files),
            str(limits.processes if process_cap else 0), str(-1 if become_uid is None else become_uid)]
