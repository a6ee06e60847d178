"""The bubblewrap command line of an isolated transform, and the files its Python runtime needs.

What the sandbox holds: the interpreter and its standard library, the system libraries and
time zone data, all read-only; a fresh /proc showing only the sandbox's own processes; a
minimal /dev; two empty, size-capped, in-memory directories (the scratch directory it starts
in, and /tmp); nothing else. It has its own user, PID, mount, network, IPC, UTS and cgroup
namespaces: no network at all (not even the host's loopback), no other process to see or
signal, and when its first process ends the kernel kills every process left in it.

When the server runs as root, a transform must not run as root even inside its namespace,
because the kernel does not enforce the process cap for root. bubblewrap then waits
(`--userns-block-fd`) while the server writes the namespace's id maps itself: namespace root
stays the server's root for bubblewrap's setup, and the sandbox user (SANDBOX_ID) is an
unprivileged id outside (`transform_uid`), which the child switches to before any graph code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from orch.sandbox.limits import TransformLimits

SANDBOX_ID = 1000  # the transform's uid and gid inside its namespace
SCRATCH = "/scratch"  # its working directory
_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32")
_TOP_LIBS = ("/lib", "/lib64", "/lib32", "/libx32")
_SHARED_DATA = ("/usr/share/zoneinfo", "/etc/ld.so.cache")


@dataclass(frozen=True)
class Runtime:
    """The interpreter a transform runs (its real path, the same inside the sandbox), the
    paths bound read-only at their own place, and the symlinks of a merged-/usr system."""

    executable: str
    binds: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = ()  # (target, link path), e.g. ("usr/lib", "/lib")


def python_runtime() -> Runtime:
    """This interpreter's runtime: its binary, the lib directories of its prefix, and the
    system libraries it links against. No venv and no site-packages: transforms run `-I -S`."""
    executable = os.path.realpath(sys.executable)
    candidates: list[str] = [*_SYSTEM_LIBS]
    links: list[tuple[str, str]] = []
    for top in _TOP_LIBS:
        if os.path.islink(top):
            links.append((os.readlink(top), top))
        elif os.path.isdir(top):
            candidates.append(top)
    for prefix in dict.fromkeys((sys.base_prefix, sys.base_exec_prefix)):
        candidates += [os.path.join(prefix, "lib"), os.path.join(prefix, "lib64")]
    candidates += [executable, *_SHARED_DATA]
    present = [os.path.realpath(p) for p in candidates if os.path.exists(p) and not os.path.islink(p)]
    return Runtime(executable=executable, binds=_outermost(present), links=tuple(links))


def masks(runtime: Runtime, hidden: Sequence[str]) -> tuple[str, ...]:
    """The `hidden` paths (the server's working directory, its database, its graphs) that fall
    inside a runtime bind, as happens when a server lives under /usr: each is covered with an
    empty directory in the sandbox. A path that holds part of the runtime cannot be covered."""
    out: list[str] = []
    for path in dict.fromkeys(os.path.realpath(h) for h in hidden):
        inside = any(_below(path, b) for b in runtime.binds)
        holds_runtime = any(b == path or _below(b, path) for b in runtime.binds)
        if inside and not holds_runtime and os.path.isdir(path):
            out.append(path)
    return tuple(out)


def bwrap_command(bwrap: str, runtime: Runtime, program: Sequence[str], *, limits: TransformLimits,
                  info_fd: int, userns_block_fd: int | None = None, covered: Sequence[str] = (),
                  env: dict[str, str] | None = None) -> list[str]:
    """The full bwrap argv that runs `program` (argv inside the sandbox).

    With `userns_block_fd` (server running as root), bwrap waits for the caller to write the id
    maps (`id_map`), and the program keeps CAP_SETUID/CAP_SETGID just long enough to become
    SANDBOX_ID; otherwise bwrap maps SANDBOX_ID to the server's own uid and the program
    starts with no capabilities, unable to create further user namespaces."""
    scratch_bytes = str(limits.scratch_mb << 20)
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
           "--hostname", "sandbox", "--info-fd", str(info_fd), "--cap-drop", "ALL"]
    if userns_block_fd is not None:
        cmd += ["--userns-block-fd", str(userns_block_fd), "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID), "--disable-userns"]
    cmd.append("--clearenv")
    for name, value in (env or {}).items():
        cmd += ["--setenv", name, value]
    for parent in _parents(runtime.binds):  # bubblewrap would make them 0700, closed to the sandbox user
        cmd += ["--perms", "0755", "--dir", parent]
    for path in runtime.binds:
        cmd += ["--ro-bind", path, path]
    for target, link in runtime.links:
        cmd += ["--symlink", target, link]
    for path in covered:
        cmd += ["--tmpfs", path, "--remount-ro", path]
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", scratch_bytes, "--tmpfs", "/tmp",
            "--perms", "0777", "--size", scratch_bytes, "--tmpfs", SCRATCH, "--chdir", SCRATCH,
            "--remount-ro", "/dev", "--remount-ro", "/", "--", *program]
    return cmd


def id_map(outer_id: int) -> str:
    """uid_map/gid_map of a root server's sandbox: namespace root is the server's root (for
    bubblewrap's setup only), SANDBOX_ID is `outer_id`."""
    return f"0 0 1\n{SANDBOX_ID} {outer_id} 1\n"


def write_id_maps(pid: int, outer_id: int) -> None:
    """Write the id maps of the user namespace of `pid` (bubblewrap's sandbox process)."""
    proc = Path(f"/proc/{pid}")
    (proc / "uid_map").write_text(id_map(outer_id))
    (proc / "gid_map").write_text(id_map(outer_id))


def _parents(paths: Sequence[str]) -> list[str]:
    """Every directory above `paths` but the root, each after its own parents."""
    out: list[str] = []
    for path in paths:
        parts = path.strip("/").split("/")[:-1]
        out += ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return list(dict.fromkeys(out))


def _below(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip("/") + "/")


def _outermost(paths: list[str]) -> tuple[str, ...]:
    """`paths` without duplicates and without those inside another of them, in order."""
    unique = list(dict.fromkeys(paths))
    return tuple(p for p in unique if not any(_below(p, other) for other in unique if other != p))
