"""A tool module (ORCH_TOOL_MODULES=tests.fakes.slow_tools) whose tool takes its time, so that a
test can stop a server in the middle of a run."""

from __future__ import annotations

import time


def pause(seconds: float) -> str:
    """Wait, then say how long."""
    time.sleep(seconds)
    return f"paused {seconds}s"


TOOLS = [pause]
