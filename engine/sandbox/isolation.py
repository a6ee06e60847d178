"""Which way transforms run on this machine, decided once at start and stated plainly.

`transform_isolation` (ORCH_TRANSFORM_ISOLATION) is `auto` (the default), `isolated` or
`unisolated`:

- isolated wherever bubblewrap can start a sandbox here: checked by running a real transform
  through it, not by looking for the binary;
- `isolated` set explicitly and not possible: the server does not start;
- otherwise unisolated, but only when the operator sets `unisolated` or the server runs in local
  mode (loopback, no API keys: whoever posts a graph runs their own code). A server that accepts
  API keys refuses transforms instead: the orchestrations that use them are left out at load
  time with a problem naming the setting, and the others serve.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from orch.errors import RunError
from orch.sandbox.bubblewrap import SANDBOX_ID, masks, python_runtime
from orch.sandbox.environment import child_env
from orch.sandbox.launch import Sandbox
from orch.sandbox.limits import TransformLimits
from orch.sandbox.transform import run_transform
from orch.settings import Settings

SETTING = "ORCH_TRANSFORM_ISOLATION"
REFUSAL_CODE = "transform-not-isolated"  # the problem of an orchestration left out for its transforms
INSTALL_HINT = f"install bubblewrap (Debian package `bubblewrap`), or set {SETTING}=unisolated to run them without isolation"
# Run by the probe: the sandbox user, and a /proc that shows the sandbox's two processes only.
_PROBE_CODE = "import os\nresult = [os.getuid(), len([p for p in os.listdir('/proc') if p.isdigit()]) <= 2]"


class IsolationUnavailable(RuntimeError):
    """`transform_isolation` is `isolated` and this machine cannot isolate transforms."""


@dataclass(frozen=True)
class Probe:
    """Whether bubblewrap works here; `detail` is its version, or why it does not work."""

    works: bool
    detail: str


@dataclass(frozen=True)
class TransformPolicy:
    """The decision: `sandbox` runs the transforms, or is None when they are refused; `summary`
    is the sentence for the operator; `reason` says why isolation is not possible (if not)."""

    mode: Literal["isolated", "unisolated", "refused"]
    summary: str
    sandbox: Sandbox | None
    reason: str = ""

    def refusal(self) -> str:
        """The error of a transform step on a server that refuses transforms."""
        return f"transform steps cannot run on this server: it cannot isolate them ({self.reason}) and it accepts API keys"


def transform_policy(settings: Settings, *, local: bool) -> TransformPolicy:
    """How transforms run under `settings`; `local` is true when the caller runs their own code
    (`orch serve --local`, `orch run`, the engine used as a library). Raises IsolationUnavailable
    when isolation is required and not possible."""
    setting = settings.transform_isolation
    limits = f"at most {settings.transform_max_processes} processes, {settings.transform_memory_mb} MB each"
    if setting == "unisolated":
        return TransformPolicy("unisolated", f"transforms run UNISOLATED ({SETTING}=unisolated): graph code runs "
                               "as the server's user, with its files, its network and its environment",
                               _sandbox(settings, None), reason=f"{SETTING}=unisolated")
    probe = probe_bubblewrap(settings.transform_bwrap, _transform_uid(settings))
    if probe.works:
        return TransformPolicy("isolated", f"transforms run isolated ({probe.detail}): own user, PID, mount and "
                               f"network namespaces, no network, {limits}", _sandbox(settings, probe))
    if setting == "isolated":
        raise IsolationUnavailable(f"{SETTING} is 'isolated' but transforms cannot be isolated here: {probe.detail}")
    if local:
        return TransformPolicy("unisolated", f"transforms run unisolated ({probe.detail}); local mode: graph code "
                               "runs as your user, with your files and your network", _sandbox(settings, None),
                               reason=probe.detail)
    return TransformPolicy("refused", f"transforms are refused: this server cannot isolate them ({probe.detail}) and "
                           f"it accepts API keys, so orchestrations with transform steps are left out; {INSTALL_HINT}",
                           None, reason=probe.detail)


def transform_limits(settings: Settings) -> TransformLimits:
    return TransformLimits(timeout_seconds=settings.transform_timeout_seconds, cpu_seconds=settings.transform_cpu_seconds,
                           memory_mb=settings.transform_memory_mb, processes=settings.transform_max_processes)


def _transform_uid(settings: Settings) -> int | None:
    """The unprivileged id a root server's transforms run as; None when the server is not root."""
    return settings.transform_uid if os.geteuid() == 0 else None


def _sandbox(settings: Settings, probe: Probe | None) -> Sandbox:
    runtime = python_runtime()
    if probe is None:
        return Sandbox("unisolated", runtime)
    hidden = [os.getcwd(), settings.graphs_dir, settings.sandbox_root]
    if settings.database_url.startswith("sqlite:///"):
        hidden.append(os.path.dirname(os.path.abspath(settings.database_url[len("sqlite:///"):])))
    return Sandbox("isolated", runtime, bwrap=shutil.which(settings.transform_bwrap),
                   transform_uid=_transform_uid(settings), covered=masks(runtime, hidden))


@functools.lru_cache(maxsize=8)
def probe_bubblewrap(bwrap: str, transform_uid: int | None) -> Probe:
    """Run one transform through bubblewrap, as every transform will run: the honest answer to
    "can this machine isolate?" (user namespaces may be disabled, a container may forbid them)."""
    if not sys.platform.startswith("linux"):
        return Probe(False, "transforms are isolated only on Linux")
    path = shutil.which(bwrap)
    if path is None:
        return Probe(False, f"bubblewrap is not installed: no `{bwrap}` command")
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, env=child_env(),
                                 timeout=10).stdout.strip() or "bubblewrap"
    except (OSError, subprocess.SubprocessError) as exc:
        return Probe(False, f"`{path} --version` failed: {exc}")
    sandbox = Sandbox("isolated", python_runtime(), bwrap=path, transform_uid=transform_uid)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the caller may be inside an event loop
            got = pool.submit(lambda: asyncio.run(run_transform(
                _PROBE_CODE, {}, sandbox=sandbox, limits=TransformLimits(timeout_seconds=20)))).result()
    except (RunError, OSError) as exc:
        first = str(exc).replace("transform process failed", "bubblewrap failed").split("\n")
        return Probe(False, f"bubblewrap cannot start a sandbox here: {' '.join(s.strip() for s in first)}")
    if got != [SANDBOX_ID, True]:
        return Probe(False, f"bubblewrap started a sandbox that does not run as its own user (got {got!r})")
    return Probe(True, version)
