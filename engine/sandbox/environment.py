"""The environment of every process the server starts: built from nothing, never inherited.

The server's own environment holds its secrets (ORCH_API_KEYS, provider keys, database URLs
with passwords), so a child gets a fixed base, then only the variables the operator names in
`child_env_passthrough` (ORCH_CHILD_ENV_PASSTHROUGH), then what the child's own declaration
sets (an MCP server's `env`). Transforms take no passthrough at all.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

BASE_ENV: Mapping[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def child_env(passthrough: Iterable[str] = (), *, extra: Mapping[str, str] | None = None,
              source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: BASE_ENV, the `passthrough` variables that are set
    in `source` (the server's environment by default), then `extra`."""
    environ = os.environ if source is None else source
    env = dict(BASE_ENV)
    env.update({name: environ[name] for name in passthrough if name in environ})
    env.update(extra or {})
    return env
