"""What the research-report graph emits, and executors that slow a run down so that readers
can arrive while it is going."""

from __future__ import annotations

import asyncio
from typing import Any

from orch.steps import default_executors
from orch.steps.base import StepContext, StepResult

# Up to the gate. The researcher calls current_time, so its step also has tool events.
FIRST_LEG = [
    "run_start",
    "step_start", "agent_turn", "tool_execution", "tool_result", "agent_turn", "step_complete",  # step-research
    "step_start", "agent_turn", "step_complete",  # step-write
    "step_start", "human_input_required", "done",  # step-approve
]
SECOND_LEG = [
    "step_complete",  # step-approve, answered
    "step_start", "routing_decision", "step_complete",  # step-decide
    "step_start", "step_complete",  # step-publish
    "orchestration_complete", "done",
]


def slowed(delay: float) -> dict[str, Any]:
    agent = default_executors()["agent"]

    async def slow_agent(ctx: StepContext) -> StepResult:
        await asyncio.sleep(delay)
        return await agent(ctx)

    return {"agent": slow_agent}
