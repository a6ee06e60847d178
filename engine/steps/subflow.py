"""Sub-orchestrations: an agent step whose agent has `type: orchestrator` runs another
orchestration as a child run (fresh state, message = the step's rendered prompt).

The child is started with an idempotency key made of the parent run, step and iteration, so a
parent that restarts this step after a crash, or re-enters it after a gate in the child was
answered, finds the same child instead of starting another. A gate inside the child pauses the
parent; answering the parent's gate answers the child's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Mapping

from orch.definition.spec import Agent, AgentStep, StepBase
from orch.definition.templates import render
from orch.errors import EngineError, StepFailed
from orch.steps.base import GateRequest, StepContext, StepKind, StepResult, prompt_reads

MAX_DEPTH = 3
ORCHESTRATOR = "orchestrator"  # the agent type that runs an orchestration


async def run_subflow(ctx: StepContext) -> StepResult:
    spec = ctx.step.spec
    children = ctx.children
    agent = ctx.graph.agents[spec.agent_id or ""]
    depth = ctx.depth + 1
    if depth > MAX_DEPTH:
        raise StepFailed(f"step {spec.id}: sub-orchestrations nest at most {MAX_DEPTH} deep", step_id=spec.id)
    child_orch = agent.orchestration_id or ""
    message = render(spec.prompt_template, ctx.state) if spec.prompt_template else str(ctx.state.get("user_input") or "")
    child_id = await children.start_child(child_orch, message, idempotency_key=f"{ctx.run_id}:{ctx.key}",
                                          parent=(ctx.run_id, spec.id, depth))
    try:
        result = await children.wait(child_id)
    except asyncio.CancelledError:
        # The parent step timed out or the parent run was cancelled: the child stops with it.
        # When the engine is shutting down, both stay as they are and recover together.
        if not children.closing:
            with contextlib.suppress(EngineError):
                await asyncio.shield(children.cancel_child(child_id))
        raise
    turns = sum(h.turns for h in result.step_history or [])
    if result.status == "paused":
        gate = result.human_input_required
        deadline = await children.gate_deadline(child_id) or time.time() + 3600
        return StepResult(turns=turns, gate=GateRequest(
            prompt=gate.prompt, fields=gate.fields, agent_context=gate.agent_context,
            timeout_seconds=max(0.0, deadline - time.time()), child_run_id=child_id))
    # The child's spend joins the parent's once the child has finished, so re-entering this
    # step after a gate in the child never counts it twice.
    ctx.add_cost(float(result.total_cost_usd or 0.0))
    if result.status != "completed":
        raise StepFailed(f"step {spec.id}: sub-orchestration '{child_orch}' ({child_id}) {result.status}: "
                         f"{result.response}", step_id=spec.id)
    return StepResult(output=result.response, turns=turns)


def runs_orchestration(spec: StepBase, agents: Mapping[str, Agent]) -> bool:
    agent = agents.get(spec.agent_id or "")
    return agent is not None and agent.type == ORCHESTRATOR


# Not a type of graph files: the compiler gives it to agent steps whose agent is an orchestrator.
KIND = StepKind(
    name="subflow", spec=AgentStep, executor=run_subflow,
    reads=lambda spec, expression: prompt_reads(spec, spec.prompt_template), uses_agent=True,
)
