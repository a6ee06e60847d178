"""Running graph code that may be hostile, and every other child process, without lending it the server.

    isolation.py    which way transforms run here (isolated, unisolated, refused), decided at start
    transform.py    run one transform: job in, result out, nothing left behind
    launch.py       start its process (through bubblewrap or not) and end all of it
    bubblewrap.py   the sandbox's command line and the Python runtime bound into it
    child.py        the program the transform's process runs
    limits.py       the bounds, and how the way the process ended becomes a result or an error
    environment.py  the environment of any child process: built from nothing
"""

from orch.sandbox.environment import child_env
from orch.sandbox.isolation import (
    INSTALL_HINT, REFUSAL_CODE, IsolationUnavailable, TransformPolicy, transform_limits, transform_policy,
)
from orch.sandbox.launch import Sandbox
from orch.sandbox.limits import TransformError, TransformLimits
from orch.sandbox.transform import check_transform_syntax, run_transform

__all__ = [
    "INSTALL_HINT", "REFUSAL_CODE", "IsolationUnavailable", "Sandbox", "TransformError", "TransformLimits",
    "TransformPolicy", "check_transform_syntax", "child_env", "run_transform", "transform_limits", "transform_policy",
]
